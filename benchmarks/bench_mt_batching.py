"""Cost of one source length per model batch (``[mt] same_length_batches``) against padded
batches, both engines, same run.

    python benchmarks/bench_mt_batching.py --demo DEMO_OUT [--rounds 3]

DEMO_OUT is an ``m3curate demo`` output (its trained MT model in models/mt/model and its
held-out captions in inputs/heldout/parallel.tsv); the model is converted to CTranslate2
once under DEMO_OUT/models/ct2-bench. Reports process CPU seconds (best of ``--rounds``),
one thread, beam 4; sentences per CPU second for each engine and batching.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from translate.ct2_engine import CT2Translator, convert_checkpoint  # noqa: E402
from translate.engine import Decoding  # noqa: E402
from translate.fairseq_engine import FairseqTranslator  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--demo", required=True, help="an `m3curate demo` output folder")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    demo = Path(args.demo)
    model, ct2 = demo / "models" / "mt" / "model", demo / "models" / "ct2-bench"
    if not (ct2 / "model.bin").exists():
        convert_checkpoint(model, ct2)
    with (demo / "inputs" / "heldout" / "parallel.tsv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    by_lang: dict[str, list[str]] = {}
    for row in rows:
        by_lang.setdefault(row["tgt_lang"], []).append(row["src"])
    n = sum(len(s) for s in by_lang.values())
    best: dict[tuple[str, bool], float] = {}
    for _ in range(args.rounds):
        for kind, cls, path in (("fairseq", FairseqTranslator, model), ("ctranslate2", CT2Translator, ct2)):
            for same in (False, True):
                engine = cls(path, Decoding(beam=4, same_length=same), cpu_threads=1)
                started = time.process_time()
                for lang, sentences in by_lang.items():
                    engine.translate(sentences, "en", lang)
                seconds = time.process_time() - started
                best[(kind, same)] = min(best.get((kind, same), float("inf")), seconds)
    print(f"{n} sentences, beam 4, one thread, best of {args.rounds}; load {os.getloadavg()[0]:.1f}")
    print("| engine | batches | CPU s | sentences per CPU s |\n|---|---|---|---|")
    for (kind, same), seconds in sorted(best.items()):
        print(f"| {kind} | {'one source length' if same else 'padded'} | {seconds:.2f} | {n / seconds:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
