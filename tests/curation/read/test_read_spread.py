"""The reshuffle after reading: there where it can spread records over workers, not on a
local runner with one worker (where it only holds every record once more in memory)."""

from __future__ import annotations

import apache_beam as beam
import pytest

from curation.config import load_config
from curation.demo.corpus import write_corpus
from curation.pipeline import build_pipeline, pipeline_options
from curation.read.source import spreads


def _transform_labels(p: beam.Pipeline) -> list[str]:
    labels = []

    class Visitor(beam.pipeline.PipelineVisitor):
        def enter_composite_transform(self, node):
            labels.append(node.full_label)

        def visit_transform(self, node):
            labels.append(node.full_label)

    p.visit(Visitor())
    return labels


@pytest.mark.parametrize(
    ("args", "spread"),
    [
        ([], False),
        (["--direct_num_workers=1"], False),
        (["--runner=DirectRunner"], False),
        (["--direct_num_workers=2", "--direct_running_mode=multi_processing"], True),
        (["--direct_num_workers=0"], True),  # 0: as many workers as cores
        (["--runner=PortableRunner", "--job_endpoint=embed"], True),
    ],
)
def test_the_reads_reshuffle_only_where_there_are_workers_to_spread_over(tmp_path, args, spread):
    p = beam.Pipeline(options=pipeline_options(args))
    assert spreads(p) is spread
    cfg = load_config(write_corpus(tmp_path, n=6, seed=1))
    build_pipeline(p, cfg, str(tmp_path / "out"))
    spread_steps = [label for label in _transform_labels(p) if label.endswith("/Spread")]
    assert len(spread_steps) == (len(cfg.sources) if spread else 0), spread_steps
