"""m3curate: translate."""
