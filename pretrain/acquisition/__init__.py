"""MLA language acquisition: new languages on a frozen, trained RC3 model.

``encoder`` holds the language acquisition encoder and ``AcquiredModel`` (the frozen base
plus one encoder per acquired language, routing texts by language); ``data`` reads what the
two stages train on from a curated dataset (``parallel`` rows for Native Language Transfer,
new-language captions in ``pairs`` for Language Exposure). ``pretrain.acquire`` is the
command: ``run_acquisition``.
"""
