"""m3curate's machine-translation stage (imports nothing heavy; see translate/README.md).

Public API, by module:

- ``translate.engine``: ``Translator`` (the interface), ``Hypothesis``, ``Decoding``.
- ``translate.fairseq_engine``: ``FairseqTranslator`` (fairseq checkpoint directories).
- ``translate.ct2_engine``: ``CT2Translator``, ``convert_checkpoint``.
- ``translate.config``: ``TranslateConfig``, ``translate_config_from_dict``.
- ``translate.beam``: ``TranslateCaptions`` (the ``mt`` row stage).
- ``translate.handler``: ``TranslationModelHandler`` (Beam RunInference).
- ``translate.checkpoint``: ``safe_load``, ``UnsafeCheckpointError``, ``ModelInfo``.
- ``translate.demo_model``: ``train_demo_model`` (the demo's tiny fairseq transformer).
- ``translate.cli``: ``register`` (adds ``m3curate mt``).
"""
