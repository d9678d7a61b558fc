"""manifest.json: what a build read, wrote and dropped, and the proof that nothing was lost.

The counts come from two independent places: input records are counted by the pipeline
as they are read (``_counts/inputs.json``), outputs and rejects are counted from the
written shards. Each shard's entry in ``files`` also records its ``size`` and ``sha256``,
which ``m3curate validate`` and the trainer check the files against (``schemas.dataset``). ``reconcile`` checks input = output + rejected overall, per source and per
stage; a build whose counts do not reconcile fails.
"""

from __future__ import annotations

import hashlib
import json
import platform
import posixpath
from collections import Counter
from collections.abc import Iterable
from importlib import metadata
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from curation.output.write import INPUT_COUNTS, TABLES
from curation.stages import SPINE
from schemas import SCHEMA_VERSION

TOOLS = ("m3curate", "apache-beam", "pyarrow", "pillow", "pillow-simd", "numpy", "fasttext", "torch", "fairseq-fixed", "ctranslate2")


class ReconciliationError(RuntimeError):
    """input != output + rejected somewhere: a record was lost or counted twice."""


HIST_BINS = 10


class RelevanceHistogram:
    """The manifest's relevance distribution, accumulated one row at a time (a build's rows
    need not fit in memory): per language, per scorer, the weak texts' score counts in
    ``bins`` equal bins over [0, 1] (the last one closed), their mean, and how many stayed
    unscored (null, listed under scorer "none")."""

    def __init__(self, bins: int = HIST_BINS):
        self.bins = bins
        self.cells: dict[tuple[str, str], list[Any]] = {}  # (lang, scorer) -> [n, null, sum, counts]

    def add(self, texts: Iterable[dict[str, Any]]) -> None:
        """Count the weak texts of one pairs row's ``texts``."""
        for t in texts:
            if t["kind"] != "weak":
                continue
            cell = self.cells.setdefault((t["lang"], t.get("relevance_scorer") or "none"), [0, 0, 0.0, [0] * self.bins])
            cell[0] += 1
            r = t.get("relevance")
            if r is None:
                cell[1] += 1
            else:
                cell[2] += r
                cell[3][min(int(r * self.bins), self.bins - 1)] += 1

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {"bins": [round(i / self.bins, 6) for i in range(self.bins + 1)], "by_lang": {}}
        for (lang, sid), (n, null, total, counts) in sorted(self.cells.items()):
            scored = n - null
            out["by_lang"].setdefault(lang, {})[sid] = {
                "n": n, "null": null, "counts": counts, "mean": round(total / scored, 4) if scored else None}
        return out


def relevance_histogram(rows: Iterable[dict[str, Any]], bins: int = HIST_BINS) -> dict[str, Any]:
    """``RelevanceHistogram`` of pairs rows (only ``texts`` is read)."""
    hist = RelevanceHistogram(bins)
    for row in rows:
        hist.add(row["texts"])
    return hist.result()


def tool_versions() -> dict[str, str]:
    """Installed versions of the tools the output bytes depend on, plus ``PIL``: the Pillow
    that was imported (Pillow-SIMD, e.g. "12.1.1.post0", resizes to other bytes than Pillow
    and may be on the path without a distribution of its own)."""
    import PIL

    versions = {"python": platform.python_version(), "PIL": PIL.__version__}
    for name in TOOLS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def shard_files(directory: str, table: str) -> list[str]:
    """Shard paths of one table under directory, sorted."""
    pattern = posixpath.join(directory, table, "*.parquet")
    matches = FileSystems.match([pattern])[0].metadata_list
    return sorted(m.path for m in matches)


def shard_digest(path: str) -> tuple[int, str]:
    """(size in bytes, sha256 hex) of one written shard, read in chunks."""
    digest, size = hashlib.sha256(), 0
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        while chunk := handle.read(8 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _read(path: str, columns: list[str]) -> Any:
    with FileSystems.open(path) as handle:
        return pq.read_table(handle, columns=columns)


class _Tally:
    """What ``summarise`` counts, accumulated shard by shard, column-wise (no row dicts: a
    build's rows need not fit in memory, and reading them as Python objects cost more than
    counting them)."""

    def __init__(self) -> None:
        self.langs: Counter[str] = Counter()
        self.by_kind: dict[str, Counter[str]] = {}
        self.out_by_source: Counter[str] = Counter()
        self.derived = 0
        self.relevance = RelevanceHistogram()
        self.record_rejects: Counter[str] = Counter()  # "stage/reason"
        self.text_rejects: Counter[str] = Counter()
        self.rejected_by_source: Counter[str] = Counter()

    def texts(self, langs: list[str], kinds: list[str]) -> None:
        for lang, kind in zip(langs, kinds, strict=True):
            self.langs[lang] += 1
            self.by_kind.setdefault(kind, Counter())[lang] += 1

    def pairs(self, table: Any) -> None:
        self.out_by_source.update(table.column("source").to_pylist())
        flat = pc.list_flatten(table.column("texts"))
        kinds = pc.struct_field(flat, "kind")
        self.texts(pc.struct_field(flat, "lang").to_pylist(), kinds.to_pylist())
        weak = flat.filter(pc.equal(kinds, "weak"))  # in row order: the relevance sums add as before
        fields = (pc.struct_field(weak, name).to_pylist() for name in ("lang", "relevance_scorer", "relevance"))
        self.relevance.add({"kind": "weak", "lang": lang, "relevance_scorer": scorer, "relevance": r}
                           for lang, scorer, r in zip(*fields, strict=True))

    def parallel(self, table: Any) -> None:
        inputs = table.column("source").filter(pc.is_null(table.column("pair_id"))).to_pylist()
        self.out_by_source.update(inputs)
        self.derived += table.num_rows - len(inputs)  # rows made by translation are derived, not input records
        langs = table.column("src_lang").to_pylist() + table.column("tgt_lang").to_pylist()
        self.texts(langs, ["parallel"] * len(langs))

    def rejects(self, table: Any) -> None:
        for source, stage, reason, level in zip(*(table.column(c).to_pylist() for c in REJECT_COLUMNS), strict=True):
            if level == "record":
                self.record_rejects[f"{stage}/{reason}"] += 1
                self.rejected_by_source[source] += 1
            elif level == "text":
                self.text_rejects[f"{stage}/{reason}"] += 1


REJECT_COLUMNS = ["source", "stage", "reason", "level"]
COLUMNS = {"pairs": ["source", "texts"], "parallel": ["source", "src_lang", "tgt_lang", "pair_id"], "rejects": REJECT_COLUMNS}


def summarise(directory: str) -> dict[str, Any]:
    """Count rows, languages and rejects in the written shards of a build directory."""
    files: dict[str, list[dict[str, Any]]] = {}
    tally = _Tally()
    for table in TABLES:
        files[table] = []
        for path in shard_files(directory, table):
            data = _read(path, COLUMNS[table])
            size, sha256 = shard_digest(path)
            files[table].append({"path": f"{table}/{posixpath.basename(path)}", "rows": data.num_rows, "size": size,
                                 "sha256": sha256})
            getattr(tally, table)(data)
    return {
        "files": files,
        "languages": dict(sorted(tally.langs.items())),
        "languages_by_kind": {k: dict(sorted(v.items())) for k, v in sorted(tally.by_kind.items())},
        "output_by_source": dict(tally.out_by_source),
        "derived_parallel_rows": tally.derived,
        "record_rejects": tally.record_rejects,
        "text_rejects": tally.text_rejects,
        "rejected_by_source": tally.rejected_by_source,
        "relevance": tally.relevance.result(),
    }


def read_input_counts(directory: str) -> dict[str, int]:
    path = posixpath.join(directory, INPUT_COUNTS)
    if not FileSystems.exists(path):
        return {}
    with FileSystems.open(path) as handle:
        return json.loads(handle.read().decode())


def _stage_table(input_records: int, record_rejects: Counter[str], ran: tuple[str, ...]) -> list[dict[str, Any]]:
    stages, remaining = [], input_records
    extra = sorted({key.split("/")[0] for key in record_rejects} - set(ran))
    for stage in (*ran, *extra):
        dropped = {k.split("/", 1)[1]: n for k, n in sorted(record_rejects.items()) if k.split("/")[0] == stage}
        out = remaining - sum(dropped.values())
        stages.append({"stage": stage, "input": remaining, "output": out, "rejected": dropped})
        remaining = out
    return stages


def reconcile(inputs: dict[str, int], summary: dict[str, Any], stages: tuple[str, ...] = SPINE) -> dict[str, Any]:
    """Counts for the manifest, with per-source and per-stage checks."""
    by_reason, text_by_reason = summary["record_rejects"], summary["text_rejects"]
    rejected_by_source = summary["rejected_by_source"]
    rejected = sum(by_reason.values())
    output = sum(summary["output_by_source"].values())
    total_in = sum(inputs.values())
    per_source = {}
    for source in sorted(set(inputs) | set(summary["output_by_source"]) | set(rejected_by_source)):
        i, o, r = inputs.get(source, 0), summary["output_by_source"].get(source, 0), rejected_by_source[source]
        per_source[source] = {"input": i, "output": o, "rejected": r, "reconciled": i == o + r}
    stage_rows = _stage_table(total_in, by_reason, stages)
    ok = total_in == output + rejected and all(s["reconciled"] for s in per_source.values())
    return {
        "input_records": total_in,
        "output_records": output,
        "rejected_records": rejected,
        "rejected_by_reason": dict(sorted(by_reason.items())),
        "rejected_texts": sum(text_by_reason.values()),
        "rejected_texts_by_reason": dict(sorted(text_by_reason.items())),
        "pairs_rows": sum(f["rows"] for f in summary["files"]["pairs"]),
        "parallel_rows": sum(f["rows"] for f in summary["files"]["parallel"]),
        "derived_parallel_rows": summary.get("derived_parallel_rows", 0),
        "by_source": per_source,
        "stages": stage_rows,
        "reconciled": ok,
    }


def build_manifest(config: dict[str, Any], directory: str, stages: tuple[str, ...] = SPINE) -> dict[str, Any]:
    """The manifest of a finished build in ``directory`` (its staging directory).

    It holds nothing that changes between runs of the same build (no timestamps, no
    runner settings: those go to run.json), so it is as deterministic as the shards.
    """
    summary = summarise(directory)
    counts = reconcile(read_input_counts(directory), summary, stages)
    return {
        "schema_version": SCHEMA_VERSION,
        "counts": counts,
        "languages": summary["languages"],
        "languages_by_kind": summary["languages_by_kind"],
        "relevance": summary["relevance"],
        "files": summary["files"],
        "config": config,
        "tools": tool_versions(),
    }


def check(manifest: dict[str, Any]) -> None:
    """Raise ReconciliationError naming where input != output + rejected."""
    counts = manifest["counts"]
    if counts["reconciled"]:
        return
    bad = [f"{s}: {c['input']} in, {c['output']} out, {c['rejected']} rejected" for s, c in counts["by_source"].items() if not c["reconciled"]]
    raise ReconciliationError(
        f"counts do not reconcile: {counts['input_records']} input records, {counts['output_records']} output, "
        f"{counts['rejected_records']} rejected" + (f"; {'; '.join(bad)}" if bad else "")
    )
