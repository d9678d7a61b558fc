"""m3curate: codeswitch."""
