"""Hypothesis settings for the reader fuzz tests.

``make test`` runs a small budget (``M3CURATE_FUZZ_EXAMPLES``, default 25 examples per
property: a few seconds per reader); ``make fuzz`` sets a long one, e.g.
``M3CURATE_FUZZ_EXAMPLES=2000 pytest tests/curation/fuzz``. Whole builds, a few seconds
each, run ``M3CURATE_FUZZ_BUILDS`` examples (default a fiftieth of the budget, at least 2). No example database is written (the
repository stays clean); a failure prints the example and a ``@reproduce_failure`` line.
"""

from __future__ import annotations

from fuzz_inputs import EXAMPLES
from hypothesis import HealthCheck, settings

settings.register_profile(
    "m3curate",
    max_examples=EXAMPLES,
    deadline=None,  # file I/O and Beam start-up times vary; budgets, not per-example deadlines
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
settings.load_profile("m3curate")
