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

import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from translate.batching import restore_order, token_budget_batches
from translate.checkpoint import (
    ModelInfo,
    allowed_globals,
    find_checkpoint,
    find_spm,
    lang_token,
    model_info,
    safe_load,
    setting,
    task_config,
)
from translate.engine import Decoding, Hypothesis, Translator
from translate.pieces import Pieces

META_FILE = "m3curate_mt.json"
QUANTIZATIONS = ("int8", "int8_float32", "int8_float16", "int8_bfloat16", "float16", "bfloat16", "float32")
SPECIALS = ("</s>", "<s>", "<blank>")


def convert_checkpoint(model_dir: str | Path, out_dir: str | Path, quantization: str | None = None,
                       checkpoint: str | None = None, trusted_globals: Sequence[str] = (),
                       force: bool = False) -> Path:
    """Convert a fairseq model directory to a CTranslate2 model directory; returns ``out_dir``.

    quantization: None (keep float32) or one of QUANTIZATIONS. Raises
    UnsafeCheckpointError / ModelDirError before CTranslate2 sees an unsafe or broken file.
    """
    from ctranslate2.converters import FairseqConverter

    if quantization is not None and quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization = {quantization!r}: use one of {QUANTIZATIONS}")
    root, out = Path(model_dir), Path(out_dir)
    path = find_checkpoint(root, checkpoint)
    state = safe_load(path, trusted_globals)
    info = model_info(state)
    task_cfg = task_config(state)
    fixed = setting(task_cfg, "fixed_dictionary")
    src, tgt = info.pairs[0]
    converter = FairseqConverter(str(path), str(root), source_lang=src, target_lang=tgt,
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
        raise FileNotFoundError(f"{model_dir}: no {META_FILE}; convert the checkpoint with `m3curate mt convert`")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    raw = meta["info"]
    info = ModelInfo(raw["task"], tuple(tuple(p) for p in raw["pairs"]), tuple(raw["langs"]), raw["lang_tok_style"],
                     raw["encoder_langtok"], bool(raw["decoder_langtok"]))
    return info, int(meta["max_source_positions"])


class CT2Translator(Translator):
    """A CTranslate2 model directory written by ``convert_checkpoint``.

    device: ``cpu``, ``cuda`` or ``auto``. compute_type: CTranslate2's (``default`` uses
    the stored type; ``int8``, ``float16``, ``int8_float16``, ...). cpu_threads: intra-op
    threads (0 = CTranslate2's default). model_id: ``origin``; default ``ct2:<dir name>``.
    fairseq_scores: CTranslate2 leaves the forced target-language token's log-probability
        out of a hypothesis score (fairseq counts it); when True, one extra one-step
        ``score_batch`` call per batch adds it back, so scores mean what fairseq's mean.
    """

    def __init__(self, model_dir: str | Path, decoding: Decoding | None = None, *, device: str = "cpu",
                 compute_type: str = "default", cpu_threads: int = 0, model_id: str | None = None,
                 fairseq_scores: bool = True):
        import ctranslate2

        self.decoding = decoding or Decoding()
        self.decoding.check()
        root = Path(model_dir)
        self.info, self.max_source = load_meta(root)
        self.translator = ctranslate2.Translator(str(root), device=device, compute_type=compute_type,
                                                 inter_threads=1, intra_threads=cpu_threads)
        self.pieces = Pieces(find_spm(root))
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
        batches = token_budget_batches(lengths, self.decoding.max_tokens, self.decoding.max_sentences)
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
