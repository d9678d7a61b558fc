"""Input readers: every supported format -> ``RawRecord``s and read-stage ``Reject``s.

The per-format readers are plain generators, ``iter_<format>(path, source)``, testable
without Beam (``read_tabular``, ``read_webdataset``); ``ReadSource`` only wires them into a
pipeline. Reject reasons (stage ``read``): ``unreadable_file``, ``malformed_row``,
``invalid_utf8``, ``missing_column``, ``wrong_type``, ``missing_image``, ``download_failed``,
``unsafe_member``, ``member_too_large``, ``unaligned``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import apache_beam as beam
from apache_beam.pvalue import PBegin, PCollection, TaggedOutput

from curation.config import SourceConfig
from curation.read.common import Item, match_pairs, match_paths
from curation.read.tabular import iter_csv, iter_jsonl, iter_parallel_files, iter_parquet, iter_tsv
from curation.read.webdataset import iter_webdataset
from curation.stages import READ
from schemas.rows import REJECTS_TAG, Reject
from schemas.stage import StageCounters

__all__ = [
    "READERS",
    "ReadSource",
    "iter_csv",
    "iter_file",
    "iter_jsonl",
    "iter_parallel_files",
    "iter_parquet",
    "iter_tsv",
    "iter_webdataset",
    "match_pairs",
    "match_paths",
]

READERS: dict[str, Callable[[str, SourceConfig], Iterator[Item]]] = {
    "jsonl": iter_jsonl,
    "csv": iter_csv,
    "tsv": iter_tsv,
    "parquet": iter_parquet,
    "webdataset": iter_webdataset,
    "parallel_files": iter_parallel_files,
}


def iter_file(path: str, source: SourceConfig, tgt_path: str | None = None) -> Iterator[Item]:
    """Reads one input file of ``source`` with the reader of its format.

    ``tgt_path`` is the aligned target file of a ``parallel_files`` source (looked up from
    the source's globs when omitted); other formats ignore it.
    """
    if source.format == "parallel_files":
        return iter_parallel_files(path, source, tgt_path)
    return READERS[source.format](path, source)


class ReadFileFn(beam.DoFn):
    """Reads one file (``(path, tgt_path | None)``) into records (main output) and rejects
    (``REJECTS_TAG``). Counters (namespace ``read``): ``files``, ``in`` (records and
    rejects read), ``kept`` (records), ``rejected_<reason>``.

    source: the SourceConfig the file belongs to.
    """

    def __init__(self, source: SourceConfig) -> None:
        super().__init__()
        self.source = source
        self.counters = StageCounters(READ)

    def process(self, element: tuple[str, str | None]) -> Iterator[Item | TaggedOutput]:
        path, tgt_path = element
        counters = self.counters
        counters.inc("files")
        for item in iter_file(path, self.source, tgt_path):
            counters.inc("in")
            if isinstance(item, Reject):
                counters.inc(f"rejected_{item.reason}")
                yield TaggedOutput(REJECTS_TAG, item)
            else:
                counters.inc("kept")
                yield item


class ReadSource(beam.PTransform):
    """Reads one configured input dataset; ``expand`` returns ``(records, rejects)``.

    The source's globs are expanded when the pipeline is built (``match_paths``; a glob that
    matches nothing raises ValueError then, not on a worker). Files are read one per element,
    and the records are reshuffled so that image decoding downstream spreads over workers
    instead of staying on the worker that happened to read a large file.

    source: the SourceConfig to read.
    """

    def __init__(self, source: SourceConfig) -> None:
        super().__init__(label=f"ReadSource[{source.name}]")
        self.source = source

    def expand(self, pbegin: PBegin) -> tuple[PCollection, PCollection]:
        if self.source.format == "parallel_files":
            files: list[tuple[str, str | None]] = list(match_pairs(self.source))
        else:
            files = [(path, None) for path in match_paths(self.source)]
        read = (
            pbegin
            | "Files" >> beam.Create(files)
            | "Read"
            >> beam.ParDo(ReadFileFn(self.source)).with_outputs(REJECTS_TAG, main="records")
        )
        records = read.records | "Spread" >> beam.Reshuffle()
        return records, read[REJECTS_TAG]
