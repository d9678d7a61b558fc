"""The CTranslate2 engine: the same checkpoint converted once, decoded by CTranslate2's C++.

``convert_checkpoint`` runs CTranslate2's ``FairseqConverter`` on a model directory
(after ``safe_load`` has vetted the file, and inside the same allow-list), optionally
quantising to int8 / float16, and writes beside the converted weights what the engine
needs that CTranslate2 does not keep: the SentencePiece model and ``m3curate_mt.json``
(the checkpoint's task, language pairs and language-token rules, and its source length
limit). ``CT2Translator`` then mirrors ``FairseqTranslator``: same tokenisation, same
language tokens (source prefix; target language token as forced target prefix, removed
from the text), same token-budget batches, same max-length rule per batch.

It is not bit-identical to fairseq: CTranslate2 fuses and reorders float operations
(and int8 quantises weights), so near-ties between hypotheses can resolve differently.
See the README for the agreement measured and the known differences.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from translate.batching import restore_order, token_budget_batches
from translate.checkpoint import (
    CHECKPOINT_NAMES,
    ModelInfo,
    allowed_globals,
    find_spm,
    lang_token,
    setting,
    task_config,
)
from translate.engine import Decoding, Hypothesis, Translator
from translate.model_dir import FairseqDir, open_fairseq_dir
from translate.pieces import Pieces, resolve_remove_bpe

META_FILE = "m3curate_mt.json"
QUANTIZATIONS = ("int8", "int8_float32", "int8_float16", "int8_bfloat16", "float16", "bfloat16", "float32")
SPECIALS = ("</s>", "<s>", "<blank>")


def _data_dir(md: FairseqDir, stack: contextlib.ExitStack) -> Path:
    """The directory the converter reads ``dict.<lang>.txt`` from: the model directory, or,
    when a joined dictionary sits there under one name only, a temporary one with both names."""
    if md.dicts is None:
        return md.root
    (src, tgt), = md.info.pairs
    wanted = {md.root / f"dict.{src}.txt": md.dicts.source, md.root / f"dict.{tgt}.txt": md.dicts.target}
    if all(a == b for a, b in wanted.items()):
        return md.root
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="m3curate-dicts-")))
    for name, found in wanted.items():
        shutil.copyfile(found, tmp / name.name)
    return tmp


def convert_checkpoint(model_dir: str | Path, out_dir: str | Path, quantization: str | None = None,
                       checkpoint: str | None = None, trusted_globals: Sequence[str] = (),
                       force: bool = False, languages: tuple[str, str] | None = None) -> Path:
    """Convert a fairseq model directory to a CTranslate2 model directory; returns ``out_dir``.

    quantization: None (keep float32) or one of QUANTIZATIONS. languages: (source, target)
    of a bilingual checkpoint that records none (``translate.model_dir``). Raises
    UnsafeCheckpointError / ModelDirError before CTranslate2 sees an unsafe or broken file.
    """
    from ctranslate2.converters import FairseqConverter

    if quantization is not None and quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization = {quantization!r}: use one of {QUANTIZATIONS}")
    root, out = Path(model_dir), Path(out_dir)
    md = open_fairseq_dir(root, checkpoint, trusted_globals, languages)
    info, path = md.info, md.checkpoint
    task_cfg = task_config(md.state)
    fixed = setting(task_cfg, "fixed_dictionary")
    src, tgt = info.pairs[0]
    with contextlib.ExitStack() as stack:
        converter = FairseqConverter(str(path), str(_data_dir(md, stack)), source_lang=src, target_lang=tgt,
                                     fixed_dictionary=str(root / Path(fixed).name) if fixed else None)
        with allowed_globals(trusted_globals):
            converter.convert(str(out), quantization=quantization, force=force)
    spm = find_spm(root)
    if spm is not None:
        shutil.copyfile(spm, out / "sentencepiece.bpe.model")
    meta = {"info": asdict(info), "max_source_positions": int(setting(task_cfg, "max_source_positions", 1024)),
            "checkpoint": str(path), "quantization": quantization or "float32",
            "left_pad_source": True}
    (out / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return out


def load_meta(model_dir: Path) -> tuple[ModelInfo, int]:
    meta_path = model_dir / META_FILE
    if not meta_path.is_file():
        fairseq = any((model_dir / name).is_file() for name in CHECKPOINT_NAMES)
        hint = ("it holds a fairseq checkpoint: use --engine fairseq (mt.engine = \"fairseq\"), or " if fairseq
                else "")
        raise FileNotFoundError(f"{model_dir}: no {META_FILE}; {hint}convert the checkpoint with `m3curate mt convert`")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    raw = meta["info"]
    info = ModelInfo(raw["task"], tuple(tuple(p) for p in raw["pairs"]), tuple(raw["langs"]), raw["lang_tok_style"],
                     raw["encoder_langtok"], bool(raw["decoder_langtok"]))
    return info, int(meta["max_source_positions"])


def target_vocabulary(model_dir: Path) -> list[str]:
    """The converted model's target tokens (CTranslate2's ``*_vocabulary.json``)."""
    for name in ("target_vocabulary.json", "shared_vocabulary.json", "vocabulary.json"):
        if (model_dir / name).is_file():
            return json.loads((model_dir / name).read_text(encoding="utf-8"))
    return []


def require_compute(device: str, compute_type: str) -> None:
    """ValueError in one line, saying what to do, for a CUDA device that is not there or a
    compute type CTranslate2 cannot run on ``device`` here."""
    import ctranslate2

    if device == "cuda" and ctranslate2.get_cuda_device_count() == 0:
        raise ValueError("device = 'cuda', but CTranslate2 sees no CUDA GPU here: use --device cpu "
                         "(mt.device = \"cpu\"), or run where a GPU and its driver are installed")
    if device == "auto" or compute_type in ("default", "auto"):
        return
    supported = sorted(ctranslate2.get_supported_compute_types(device))
    if compute_type not in supported:
        raise ValueError(f"compute_type = {compute_type!r} does not run on {device} here (it supports "
                         f"{', '.join(supported)}): use --compute-type default (mt.compute_type = \"default\") "
                         "or one of those")


class CT2Translator(Translator):
    """A CTranslate2 model directory written by ``convert_checkpoint``.

    device: ``cpu``, ``cuda`` or ``auto``. compute_type: CTranslate2's (``default`` uses
    the stored type; ``int8``, ``float16``, ``int8_float16``, ...). cpu_threads: intra-op
    threads (0 = CTranslate2's default). model_id: ``origin``; default ``ct2:<dir name>``.
    remove_bpe: ``auto`` | ``subword_nmt`` | ``none`` (``translate.pieces``).
    fairseq_scores: CTranslate2 leaves the forced target-language token's log-probability
        out of a hypothesis score (fairseq counts it); when True, one extra one-step
        ``score_batch`` call per batch adds it back, so scores mean what fairseq's mean.
    """

    def __init__(self, model_dir: str | Path, decoding: Decoding | None = None, *, device: str = "cpu",
                 compute_type: str = "default", cpu_threads: int = 0, model_id: str | None = None,
                 fairseq_scores: bool = True, remove_bpe: str = "auto"):
        import ctranslate2

        self.decoding = decoding or Decoding()
        self.decoding.check()
        root = Path(model_dir)
        self.info, self.max_source = load_meta(root)
        require_compute(device, compute_type)
        self.translator = ctranslate2.Translator(str(root), device=device, compute_type=compute_type,
                                                 inter_threads=1, intra_threads=cpu_threads)
        spm = find_spm(root)
        self.pieces = Pieces(spm, resolve_remove_bpe(remove_bpe, spm is not None, target_vocabulary(root)))
        self.model_id = model_id or f"ct2:{root.resolve().name}"
        self.fairseq_scores = fairseq_scores

    def supports(self, src_lang: str, tgt_lang: str) -> bool:
        return (src_lang, tgt_lang) in self.info.pairs

    def _lang(self, lang: str) -> str:
        return lang_token(lang, self.info.lang_tok_style)

    def encode(self, sentence: str, src_lang: str, tgt_lang: str) -> list[str]:
        """Source tokens without EOS (CTranslate2 appends it: add_source_eos)."""
        tokens = self.pieces.encode(sentence)
        spec = self.info.encoder_langtok if self.info.multilingual else None
        if spec:
            tokens = [self._lang(src_lang if spec.startswith("src") else tgt_lang), *tokens]
        return tokens

    def translate(self, sentences: Sequence[str], src_lang: str, tgt_lang: str) -> list[Hypothesis]:
        if not self.supports(src_lang, tgt_lang):
            raise ValueError(f"{self.model_id} does not translate {src_lang}-{tgt_lang}")
        return self.translate_tokens([self.encode(s, src_lang, tgt_lang) for s in sentences], tgt_lang)

    def translate_tokens(self, encoded: Sequence[list[str]], tgt_lang: str) -> list[Hypothesis]:
        """Hypotheses for already-tokenised sources (``encode``'s output)."""
        out: list[Hypothesis | None] = [None] * len(encoded)
        langtok = 1 if self.info.multilingual and self.info.encoder_langtok else 0
        todo = []
        for i, tokens in enumerate(encoded):
            if len(tokens) + 1 > self.max_source:
                detail = f"source has {len(tokens) + 1} tokens; the model takes at most {self.max_source}"
                out[i] = Hypothesis("", None, detail, "too_long")
            elif len(tokens) <= langtok:
                out[i] = Hypothesis("", None, "source is empty after tokenisation", "empty_source")
            else:
                todo.append(i)
        lengths = [len(encoded[i]) + 1 for i in todo]  # + EOS, as fairseq counts
        batches = token_budget_batches(lengths, self.decoding.max_tokens, self.decoding.max_sentences,
                                       self.decoding.same_length)
        prefix = self._lang(tgt_lang) if self.info.multilingual and self.info.decoder_langtok else None
        results = [self._generate([encoded[todo[k]] for k in batch], prefix) for batch in batches]
        for k, hyp in enumerate(restore_order(batches, results)):
            out[todo[k]] = hyp
        return out  # type: ignore[return-value]

    def _generate(self, batch: list[list[str]], prefix: str | None) -> list[Hypothesis]:
        """One token-budget batch; CTranslate2 sorts and pads it itself (max_batch_size=0)."""
        d = self.decoding
        longest = max(len(t) for t in batch) + 1
        # fairseq: at most a * src_len + b steps (the forced prefix token is one of them)
        max_len = int(d.max_len_a * longest + d.max_len_b)
        results = self.translator.translate_batch(
            [list(t) for t in batch], None if prefix is None else [[prefix]] * len(batch),
            beam_size=d.beam, length_penalty=d.lenpen, no_repeat_ngram_size=d.no_repeat_ngram_size,
            max_decoding_length=max_len, min_decoding_length=d.min_len, max_input_length=0,
            return_scores=True, max_batch_size=0,
        )
        prefix_lp = self._prefix_logprobs(batch, prefix) if prefix and self.fairseq_scores else None
        strip = set(SPECIALS) | ({prefix} if prefix else set())
        out = []
        for k, res in enumerate(results):
            tokens = res.hypotheses[0]
            score = float(res.scores[0])
            if prefix_lp is not None:
                norm = (len(tokens) + 1) ** d.lenpen  # + EOS: both engines divide by the full length
                score = (score * norm + prefix_lp[k]) / norm
            out.append(Hypothesis(self.pieces.decode([t for t in tokens if t not in strip]), score))
        return out

    def _prefix_logprobs(self, batch: list[list[str]], prefix: str) -> list[float]:
        """log P(target-language token | source) per sentence: one decoder step each."""
        scored = self.translator.score_batch([list(t) for t in batch], [[prefix]] * len(batch), max_input_length=0)
        return [float(s.log_probs[0]) for s in scored]
