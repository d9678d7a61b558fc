"""GroupOnDisk (curation/output/spill.py): the groups of a GroupByKey, through sorted runs
on disk, whatever the partitions and the run budget."""

from __future__ import annotations

from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from curation.output.spill import GroupOnDisk, partition_of


def test_groups_equal_group_by_key_with_values_in_a_fixed_order(tmp_path: Path):
    entries = [(f"key{i % 13}", (i, f"v{i}" * (i % 4))) for i in range(200)]
    expected = {}
    for key, value in entries:
        expected.setdefault(key, []).append(value)
    with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
        groups = p | beam.Create(entries) | GroupOnDisk(str(tmp_path / "runs"), partitions=3, budget=300)
        assert_that(groups | beam.MapTuple(lambda k, vs: (k, sorted(vs))),
                    equal_to([(k, sorted(vs)) for k, vs in expected.items()]))
    assert len(list((tmp_path / "runs").iterdir())) > 3  # the budget cut several runs


def test_a_group_s_values_come_in_encoded_order_whatever_the_input_order(tmp_path: Path):
    def groups(entries, name):
        with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
            out = p | beam.Create(entries) | GroupOnDisk(str(tmp_path / name), partitions=2, budget=100)
            assert_that(out, equal_to(expected))

    entries = [("a", "x"), ("a", "y"), ("b", "z"), ("a", "w")]
    expected = [("a", ["w", "x", "y"]), ("b", ["z"])]
    groups(entries, "one")
    groups(list(reversed(entries)), "two")


def test_partitions_spread_keys_and_never_change():
    assert len({partition_of(f"id{i}", 7) for i in range(50)}) == 7
    assert [partition_of(k, 1000) for k in ("a", "id-00001", "\udcff")] == [partition_of(k, 1000) for k in
                                                                           ("a", "id-00001", "\udcff")]
