"""m3curate's bundled RC3 pre-trainer: it reads the curated dataset (through ``schemas``
only), trains, and scores multilingual retrieval.

Entry points: ``pretrain.train.run_training``, ``pretrain.evaluate.evaluate``,
``pretrain.demo.run_demo_training``, ``pretrain.config.load_config`` and, for the CLI,
``pretrain.cli.register``. Nothing heavy is imported here, so ``import pretrain`` is free.
"""
