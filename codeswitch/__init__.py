"""m3curate: dictionary code-switching (M3P) with MUSE-format dictionaries.

Light imports only; the Beam stage is ``codeswitch.beam.CodeSwitch`` and the command is
registered from ``codeswitch.cli.register``.
"""

from codeswitch.config import CodeSwitchConfig, codeswitch_config_from_dict, load_switcher
from codeswitch.dictionary import (
    DictionaryError,
    Lexicon,
    LoadStats,
    load_lexicons,
    write_muse_dictionaries,
)
from codeswitch.switch import MODES, Span, Switched, Switcher, draw_key

__all__ = [
    "MODES",
    "CodeSwitchConfig",
    "DictionaryError",
    "Lexicon",
    "LoadStats",
    "Span",
    "Switched",
    "Switcher",
    "codeswitch_config_from_dict",
    "draw_key",
    "load_lexicons",
    "load_switcher",
    "write_muse_dictionaries",
]
