"""The ``[codeswitch]`` settings: a typed dataclass, validated once before any work starts.

``codeswitch_config_from_dict`` raises ``ValueError`` whose message names the setting and
what to change (``codeswitch.word_ratio = 1.5: must be in [0, 1]``). Dictionary paths are
resolved against the config file's directory and checked to exist; their contents are read
(and malformed lines reported) when the ``CodeSwitch`` transform is built, still before
the pipeline runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any, NoReturn

from codeswitch.dictionary import (
    MALFORMED,
    DictionaryError,
    LoadStats,
    list_dictionaries,
    load_lexicons,
    pair_of,
)
from codeswitch.switch import MODES, Switcher

CASES = ("fold", "exact")
# Kinds of text (schemas.rows.TEXT_KINDS) that may be switched: the strictly aligned ones.
# Weak texts are not, and code-switched texts are never switched again. Spelled out here
# rather than imported so that ``m3curate --help`` does not load pyarrow.
SWITCHABLE = ("caption", "translation")
# M3P's ratios: pre-training switched every caption in single-word mode (dclag with
# sent_ratio 1); its README's fine-tuning commands use 0.8 / 0.8 for the multi-word mode.
DEFAULT_SENT_RATIO = {"single": 1.0, "multi": 0.8, "sentence": 0.8}
DEFAULT_WORD_RATIO = 0.8


@dataclass
class CodeSwitchConfig:
    """Dictionary code-switching (M3P); off while ``dictionaries`` is empty.

    dictionaries: a directory of MUSE ``{src}-{tgt}.txt`` files (M3P's layout), or a table
        {"en-de" = "path.txt", ...}; local or any Beam filesystem (gs://...).
    langs: target languages to switch into (empty: every target with a dictionary).
    source_langs: languages of the texts to switch (empty: every source with a dictionary).
    mode: "single" (M3P dclag: one covered word per text), "multi" (M3P clag: each covered
        word with probability word_ratio, each into its own language), "sentence" (one
        language per text, its covered words with probability word_ratio).
    sent_ratio: probability that a text is switched at all (default: 1.0 for single, 0.8
        otherwise). word_ratio: per-word probability in multi/sentence (default 0.8).
    variants: code-switched variants made per source text (each with its own draws).
    from_kinds: kinds of text to switch: "caption" and/or "translation".
    case: "fold" (match case-insensitively, carry capitalisation over) or "exact".
    max_rank: keep the first N source words of each file (MUSE is frequency-ordered); 0: all.
    on_malformed: "error" (stop, naming file:line) or "skip" (skip and count the line).
    name: the ``origin`` written on code-switched texts (default "muse:<directory name>").
    """

    dictionaries: str | dict[str, str] = ""
    langs: list[str] = field(default_factory=list)
    source_langs: list[str] = field(default_factory=list)
    mode: str = "single"
    sent_ratio: float | None = None
    word_ratio: float | None = None
    variants: int = 1
    from_kinds: list[str] = field(default_factory=lambda: ["caption"])
    case: str = "fold"
    max_rank: int = 0
    on_malformed: str = "error"
    name: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.dictionaries)

    @property
    def fold(self) -> bool:
        return self.case == "fold"

    @property
    def origin(self) -> str:
        if self.name:
            return self.name
        if isinstance(self.dictionaries, str):
            return "muse:" + os.path.basename(self.dictionaries.rstrip("/"))
        return "muse"

    def all_dictionary_files(self) -> dict[tuple[str, str], str]:
        """(src, tgt) -> file, for every dictionary in the directory or table."""
        if isinstance(self.dictionaries, str):
            return list_dictionaries(self.dictionaries)
        return {pair: v for k, v in self.dictionaries.items() if (pair := pair_of(k))}

    def dictionary_files(self) -> dict[tuple[str, str], str]:
        """(src, tgt) -> file, restricted to source_langs and langs where they are set."""
        return {
            (src, tgt): path
            for (src, tgt), path in self.all_dictionary_files().items()
            if (not self.source_langs or src in self.source_langs) and (not self.langs or tgt in self.langs)
        }

    def target_langs(self) -> list[str]:
        """The languages to switch into, in the order that fixes each entry's options."""
        return list(self.langs) or sorted({tgt for _, tgt in self.dictionary_files()})


def _fail(name: str, value: Any, what: str) -> NoReturn:
    raise ValueError(f"codeswitch.{name} = {value!r}: {what}")


def _check_types(cfg: CodeSwitchConfig) -> None:
    for name in ("langs", "source_langs", "from_kinds"):
        value = getattr(cfg, name)
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            _fail(name, value, "must be a list of non-empty strings, e.g. [\"de\", \"fr\"]")
    if not cfg.from_kinds or not set(cfg.from_kinds) <= set(SWITCHABLE):
        _fail("from_kinds", cfg.from_kinds, f"use {' and/or '.join(SWITCHABLE)}")
    for name in ("sent_ratio", "word_ratio"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            _fail(name, value, "must be in [0, 1]")
    for name, low in (("variants", 1), ("max_rank", 0)):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            _fail(name, value, f"must be an integer >= {low}")


def _check_choices(cfg: CodeSwitchConfig) -> None:
    for name, allowed in (("mode", MODES), ("case", CASES), ("on_malformed", MALFORMED)):
        if getattr(cfg, name) not in allowed:
            _fail(name, getattr(cfg, name), f"use one of {allowed}")


def _check_dictionaries(cfg: CodeSwitchConfig) -> None:
    if isinstance(cfg.dictionaries, dict):
        for pair, path in cfg.dictionaries.items():
            if pair_of(pair) is None:
                _fail("dictionaries", pair, "keys must be language pairs like \"en-de\"")
            if not isinstance(path, str) or ("://" not in path and not os.path.isfile(path)):
                _fail(f"dictionaries.{pair}", path, "no such file")
    elif not isinstance(cfg.dictionaries, str):
        _fail("dictionaries", cfg.dictionaries, "must be a directory or a table {\"en-de\" = \"file.txt\"}")
    try:
        available = cfg.all_dictionary_files()
    except DictionaryError as err:
        raise ValueError(f"codeswitch.dictionaries: {err}") from err
    found = sorted(f"{s}-{t}" for s, t in available)
    files = cfg.dictionary_files()
    if not files:
        _fail("dictionaries", cfg.dictionaries, "no {src}-{tgt}.txt dictionary for the configured "
              f"source_langs {cfg.source_langs or 'any'} and langs {cfg.langs or 'any'}; found {found}")
    targets = {tgt for _, tgt in files}
    missing = [lang for lang in cfg.langs if lang not in targets]
    if missing:
        _fail("langs", cfg.langs, f"no dictionary into {missing}; found {found}")


def _resolve(path: str, base_dir: str) -> str:
    return path if "://" in path or os.path.isabs(path) else os.path.join(base_dir, path)


def codeswitch_config_from_dict(data: dict[str, Any], base_dir: str = ".") -> CodeSwitchConfig:
    """A validated CodeSwitchConfig from the parsed ``[codeswitch]`` table.

    Relative dictionary paths resolve against ``base_dir``; unset ratios take the mode's
    M3P default, so the resolved config (recorded in the manifest) shows the real values.
    """
    known = {f.name for f in fields(CodeSwitchConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"codeswitch: unknown setting(s) {unknown}; known: {sorted(known)}")
    cfg = CodeSwitchConfig(**data)
    if isinstance(cfg.dictionaries, str) and cfg.dictionaries:
        cfg.dictionaries = _resolve(cfg.dictionaries, base_dir)
    elif isinstance(cfg.dictionaries, dict):
        cfg.dictionaries = {k: _resolve(v, base_dir) if isinstance(v, str) else v for k, v in cfg.dictionaries.items()}
    _check_choices(cfg)
    if cfg.sent_ratio is None:
        cfg.sent_ratio = DEFAULT_SENT_RATIO[cfg.mode]
    if cfg.word_ratio is None:
        cfg.word_ratio = DEFAULT_WORD_RATIO
    _check_types(cfg)
    if cfg.enabled:
        _check_dictionaries(cfg)
    return cfg


def load_switcher(cfg: CodeSwitchConfig) -> tuple[Switcher, dict[str, LoadStats]]:
    """Read the configured dictionaries into a ready Switcher; also the LoadStats per file."""
    lexicons, stats = load_lexicons(
        cfg.dictionary_files(), cfg.target_langs(), fold=cfg.fold, max_rank=cfg.max_rank, on_malformed=cfg.on_malformed
    )
    sent = DEFAULT_SENT_RATIO[cfg.mode] if cfg.sent_ratio is None else cfg.sent_ratio
    word = DEFAULT_WORD_RATIO if cfg.word_ratio is None else cfg.word_ratio
    return Switcher(lexicons, cfg.mode, sent, word, cfg.fold), stats
