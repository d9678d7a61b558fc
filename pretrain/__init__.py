"""m3curate: pretrain."""
