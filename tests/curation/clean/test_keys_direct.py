"""Without row stages the spine's rows go straight into the writer's runs, split by shard
(``unique_rows(..., rows_per_shard)`` with ``WriteDataset(sharded=...)``): the shards,
rejects and counters must be those of the rows going through the writer's own sort and
split (the path a build with row stages takes)."""

from __future__ import annotations

from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from test_keys import pair

from curation.clean.keys import unique_rows
from curation.config import OutputConfig
from curation.output.write import SortIntoRuns, WriteDataset

PER_SHARD = 7


def rows() -> list[dict]:
    """40 rows: exact duplicates, a repeated id, a row moved to the test split."""
    out = [pair(f"k{i:02d}", f"caption {i % 30}", bytes([i % 30]), row=i) for i in range(40)]
    out.append(pair("k05", "another", b"z", row=99, rid="id-k05"))  # a repeated id, later in the file
    out.append(pair("t1", "a test image", bytes([3]), row=50, split="test"))  # k03's image: k03 moves
    return out


def build(tmp_path: Path, key: str, direct: bool) -> tuple[dict[str, bytes], dict[str, int]]:
    directory = tmp_path / ("direct" if direct else "sorted")
    p = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    pairs, dups = unique_rows(p | beam.Create(rows()), "Pairs", key, ("train", "test"), str(directory),
                              PER_SHARD if direct else None)
    tables = {"pairs": pairs, "parallel": p | "Parallel" >> beam.Create([]),
              "rejects": dups | SortIntoRuns("rejects", str(directory))}
    tables | WriteDataset(str(directory), OutputConfig(rows_per_shard=PER_SHARD), ("pairs",) if direct else ())
    result = p.run()
    result.wait_until_finish()
    counters = {f"{c.key.metric.namespace}/{c.key.metric.name}": c.committed
                for c in result.metrics().query(MetricsFilter())["counters"]}
    shards = {str(f.relative_to(directory)): f.read_bytes() for f in sorted(directory.glob("*/*.parquet"))}
    return shards, counters


@pytest.mark.parametrize("key", ["image+caption", "none"])
def test_rows_written_straight_from_the_spine_are_the_sorted_paths_shards(tmp_path: Path, key: str):
    shards, counters = build(tmp_path, key, direct=True)
    expected, expected_counters = build(tmp_path, key, direct=False)
    assert shards == expected
    assert counters == expected_counters
    dedup = key != "none"
    rows_out = (30 if dedup else 40) + 1  # rows 30-39 repeat rows 0-9; t1 comes in, the repeated id does not
    assert counters["write/pairs_rows"] == rows_out
    assert counters["write/pairs_shards"] == -(-rows_out // PER_SHARD) > 1
    assert counters["split/moved_train_to_test"] == (1 if dedup else 2)  # k03 (and, without dedup, k33)
    assert counters["dedup/rejected_duplicate_id"] == 1
