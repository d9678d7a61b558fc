"""The short table a build prints at the end: counts, rejects by reason, languages, counters;
and ``validate_dataset`` as ``m3curate validate`` runs it."""

from __future__ import annotations

import sys
from typing import Any

from curation.output.report import in_stage_order
from schemas import dataset

__all__ = ["format_summary", "print_summary", "validate_dataset"]


def _table(rows: list[tuple[str, str]], title: str) -> list[str]:
    if not rows:
        return []
    width = max(len(k) for k, _ in rows)
    return [title, *(f"  {k:<{width}}  {v:>10}" for k, v in rows)]


def _languages(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """Per language, the texts of pairs rows and the sides of parallel rows, apart (the
    manifest's ``languages`` adds them up)."""
    by_kind = manifest.get("languages_by_kind", {})
    parallel = by_kind.get("parallel", {})
    out = []
    for lang, total in manifest["languages"].items():
        sides = parallel.get(lang, 0)
        out.append((lang, f"{total - sides} / {sides}"))
    return out


def format_summary(manifest: dict[str, Any], out: str) -> str:
    counts = manifest["counts"]
    lines = [f"dataset: {out}  (schema {manifest['schema_version']}, reconciled: {counts['reconciled']})"]
    lines += _table(
        [
            ("input records", str(counts["input_records"])),
            ("output records", str(counts["output_records"])),
            ("rejected records", str(counts["rejected_records"])),
            ("pairs rows", str(counts["pairs_rows"])),
            ("parallel rows", str(counts["parallel_rows"])),
            ("  of them made by MT", str(counts.get("derived_parallel_rows", 0))),
            ("rejected texts", str(counts["rejected_texts"])),
        ],
        "counts:",
    )
    stage_rows = [(s["stage"], f"{s['input']} → {s['output']}") for s in counts["stages"] if s["rejected"] or s["input"] != s["output"]]
    lines += _table(stage_rows, "stages (in → out):")
    reasons = {**counts["rejected_by_reason"], **{f"{k} (text)": v for k, v in counts["rejected_texts_by_reason"].items()}}
    lines += _table([(k, str(v)) for k, v in in_stage_order(reasons).items()], "rejects by stage/reason:")
    lines += _table(_languages(manifest), "texts by language (pairs texts / parallel sides):")
    run = manifest.get("run", {})
    lines += _table([(k, str(v)) for k, v in run.get("counters", {}).items()], "beam counters:")
    if "seconds" in run:
        lines.append(f"took {run['seconds']}s on {run['runner']}")
    return "\n".join(lines)


def print_summary(manifest: dict[str, Any], out: str) -> None:
    print(format_summary(manifest, out))


def validate_dataset(directory: str) -> dict[str, Any]:
    """``schemas.dataset.validate_dataset`` (every shard: presence, size, sha256, schema,
    rows; no unlisted shards), plus a note on stderr when the manifest records no sizes or
    digests (written before m3curate recorded them): those shards were not checked for
    truncation or alteration beyond their schema and row counts."""
    manifest = dataset.validate_dataset(directory)
    unrecorded = dataset.unrecorded_digests(manifest)
    if unrecorded:
        total = sum(len(manifest["files"].get(t, [])) for t in ("pairs", "parallel", "rejects"))
        print(f"note: {directory}: manifest.json records no size/sha256 for {unrecorded} of {total} shards (an older "
              "build): those were checked for schema and row counts only; rebuild to record digests", file=sys.stderr)
    return manifest
