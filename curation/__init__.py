"""m3curate: curation."""
