"""MLA language acquisition: new languages on a frozen, trained RC3 model.

``encoder`` holds the language acquisition encoder and ``AcquiredModel`` (the frozen base
plus one encoder per acquired language, routing texts by language); ``losses`` the two
stages' objectives; ``data`` reads what they train on from a curated dataset (``parallel``
rows for Native Language Transfer, new-language captions in ``pairs`` for Language
Exposure); ``cli`` the ``m3curate pretrain acquire`` parser. ``pretrain.acquire`` is the
command itself: ``run_acquisition``.
"""
