"""The fairseq engine: a checkpoint directory run through fairseq's own ``SequenceGenerator``.

Exactness with ``fairseq-generate`` comes from using its parts, not re-implementing
them: the model is built by ``checkpoint_utils.load_model_ensemble_and_task`` from the
safely loaded state, sources are binarised with the task's dictionary
(``encode_line``, EOS appended, as ``fairseq-preprocess`` does), padded on the side the
task says (``left_pad_source``), and decoded by a ``SequenceGenerator`` built with the
arguments ``FairseqTask.build_generator`` passes. Multilingual checkpoints
(``translation_multi_simple_epoch``: M2M-100, NLLB) get what that task's
``build_dataset_for_inference`` and ``inference_step`` add: the source (or target)
language token prepended to the source, and the target language token forced as the
first output token and stripped from the text.

Speed comes from batching: sentences are sorted by length and cut into token-budget
batches (``translate.batching``), so padding is nearly nil, and results are put back in
input order. Unlike ``fairseq-generate``, one loaded model serves any trained direction,
the target language chosen per call.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from translate.batching import restore_order, token_budget_batches
from translate.checkpoint import (
    ModelDirError,
    ModelInfo,
    find_spm,
    lang_token,
    setting,
    task_config,
)
from translate.engine import Decoding, Hypothesis, Translator
from translate.model_dir import Dictionaries, FairseqDir, open_fairseq_dir
from translate.pieces import Pieces, resolve_remove_bpe

DTYPES = ("float32", "float16", "bfloat16")


def _overrides(model_dir: Path, info: ModelInfo, state: dict[str, Any]) -> dict[str, Any]:
    """Task settings to replace at load time: the data dir is the model dir; the pair (a
    multilingual task needs one for inference; a bilingual checkpoint may record none), and
    a multilingual task's dictionary files are looked up beside the model."""
    out: dict[str, Any] = {"data": str(model_dir)}
    out["source_lang"], out["target_lang"] = info.pairs[0]  # bilingual: given when the checkpoint lacks them
    if info.multilingual:
        task_cfg = task_config(state)
        for key in ("fixed_dictionary", "lang_dict"):
            value = setting(task_cfg, key)
            if value:
                local = model_dir / Path(value).name
                if not local.is_file():
                    raise ModelDirError(f"{model_dir}: the checkpoint's {key} {Path(value).name} is not in it")
                out[key] = str(local)
    return out


def _prepare_state(state: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """What ``checkpoint_utils.load_checkpoint_to_cpu`` does after its ``torch.load``:
    apply overrides, wrap the config for OmegaConf, upgrade old layouts."""
    from fairseq.checkpoint_utils import _upgrade_state_dict
    from fairseq.dataclass.utils import overwrite_args_by_name
    from omegaconf import OmegaConf

    if state.get("args") is not None:
        for key, value in overrides.items():
            setattr(state["args"], key, value)
    if state.get("cfg") is not None:
        state["cfg"] = OmegaConf.create(state["cfg"], flags={"allow_objects": True})
        overwrite_args_by_name(state["cfg"], overrides)
    return _upgrade_state_dict(state)


def _bilingual_task(state: dict[str, Any], dicts: Dictionaries) -> Any:
    """What ``TranslationTask.setup_task`` builds, with the dictionaries found in the model
    directory (a joined one may sit under one name only): loaded once per side, as fairseq does."""
    from fairseq.tasks.translation import TranslationTask

    return TranslationTask(state["cfg"].task, TranslationTask.load_dictionary(str(dicts.source)),
                           TranslationTask.load_dictionary(str(dicts.target)))


def _load(md: FairseqDir) -> tuple[list[Any], Any]:
    """(models, task) of an opened model directory, built by fairseq from the safely loaded state."""
    from fairseq import checkpoint_utils

    overrides = _overrides(md.root, md.info, md.state)
    state = _prepare_state(md.state, overrides)
    task = None if md.dicts is None else _bilingual_task(state, md.dicts)
    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(md.checkpoint)], arg_overrides=overrides, task=task, state=state)
    return models, task


def require_device(device: str) -> None:
    """ValueError in one line, saying what to do, when ``device`` is CUDA and there is none."""
    import torch

    if not device.startswith("cuda") or torch.cuda.is_available():
        return
    why = "this PyTorch was built without CUDA" if torch.version.cuda is None else "PyTorch sees no CUDA GPU"
    raise ValueError(f"device = {device!r}, but {why} (torch {torch.__version__}): use --device cpu "
                     "(mt.device = \"cpu\"), or run where a GPU and a CUDA build of PyTorch are installed")


def _task_setting(task: Any, key: str, default: Any) -> Any:
    from fairseq import utils

    for holder in (getattr(task, "cfg", None), getattr(task, "args", None)):
        if holder is not None and getattr(holder, key, None) is not None:
            value = getattr(holder, key)
            return utils.eval_bool(value) if isinstance(value, str) else value
    return default


class FairseqTranslator(Translator):
    """A fairseq translation checkpoint directory, loaded once, translating batches.

    model_dir: holds the checkpoint (``checkpoint`` or model.pt / checkpoint_best.pt /
        checkpoint_last.pt), ``dict.<lang>.txt`` and optionally a SentencePiece model
        (``spm_model``, else sentencepiece.bpe.model / spm.model found in the dir).
    languages: (source, target) of a bilingual checkpoint that records none
        (``translate.model_dir``); ignored otherwise.
    remove_bpe: ``auto`` | ``subword_nmt`` | ``none``: whether ``@@ `` markers are removed
        from the output (``translate.pieces``).
    decoding: beam, length penalty, max length, no-repeat n-gram, batch budget.
    device: ``cpu`` or ``cuda[:n]``; dtype: float32, or float16/bfloat16 on CUDA.
    trusted_globals: extra pickle globals the user vouches for (see translate.checkpoint).
    model_id: recorded as ``origin``; default ``fairseq:<dir name>``.
    cpu_threads: torch intra-op threads (0 = leave torch's setting).
    """

    def __init__(self, model_dir: str | Path, decoding: Decoding | None = None, *, checkpoint: str | None = None,
                 spm_model: str | None = None, device: str = "cpu", dtype: str = "float32",
                 trusted_globals: Sequence[str] = (), model_id: str | None = None, cpu_threads: int = 0,
                 languages: tuple[str, str] | None = None, remove_bpe: str = "auto"):
        import torch
        from fairseq import utils

        self.decoding = decoding or Decoding()
        self.decoding.check()
        if dtype not in DTYPES:
            raise ValueError(f"dtype = {dtype!r}: use one of {DTYPES}")
        if dtype != "float32" and not device.startswith("cuda"):
            raise ValueError(f"dtype = {dtype!r} needs a CUDA device; on {device} use float32")
        require_device(device)
        if cpu_threads > 0:
            torch.set_num_threads(cpu_threads)
        root = Path(model_dir)
        md = open_fairseq_dir(root, checkpoint, trusted_globals, languages)
        self.info = md.info
        models, task = _load(md)
        self.device = torch.device(device)
        gen_cfg = argparse.Namespace(generation=argparse.Namespace(beam=self.decoding.beam))
        for model in models:
            if dtype == "float16":
                model.half()
            elif dtype == "bfloat16":
                model.to(torch.bfloat16)
            model.to(self.device)
            model.prepare_for_inference_(gen_cfg)  # as fairseq-generate, after half()/cuda()
            model.eval()
        self.models, self.task = models, task
        self.src_dict, self.tgt_dict = task.source_dictionary, task.target_dictionary
        self.left_pad = bool(_task_setting(task, "left_pad_source", True))
        limits = utils.resolve_max_positions(task.max_positions(), *[m.max_positions() for m in models])
        self.max_source = limits[0]
        spm = find_spm(root, spm_model)
        self.pieces = Pieces(spm, resolve_remove_bpe(remove_bpe, spm is not None, self.tgt_dict.symbols))
        self.generator = self._build_generator()
        self.model_id = model_id or f"fairseq:{root.resolve().name}"

    def _build_generator(self) -> Any:
        """``FairseqTask.build_generator``'s SequenceGenerator for plain beam search."""
        from fairseq import search
        from fairseq.sequence_generator import SequenceGenerator

        d = self.decoding
        return SequenceGenerator(
            self.models, self.tgt_dict, beam_size=d.beam, max_len_a=d.max_len_a, max_len_b=d.max_len_b,
            min_len=d.min_len, normalize_scores=True, len_penalty=d.lenpen, unk_penalty=0, temperature=1.0,
            match_source_len=False, no_repeat_ngram_size=d.no_repeat_ngram_size,
            search_strategy=search.BeamSearch(self.tgt_dict),
        )

    def supports(self, src_lang: str, tgt_lang: str) -> bool:
        return (src_lang, tgt_lang) in self.info.pairs

    def _lang_id(self, lang: str) -> int:
        token = lang_token(lang, self.info.lang_tok_style)
        index = self.src_dict.index(token)
        if index == self.src_dict.unk():
            raise ValueError(f"{self.model_id}: no language token {token} in the dictionary")
        return index

    def _check_pair(self, src_lang: str, tgt_lang: str) -> None:
        if not self.supports(src_lang, tgt_lang):
            pairs = ", ".join(f"{s}-{t}" for s, t in self.info.pairs)
            raise ValueError(f"{self.model_id} does not translate {src_lang}-{tgt_lang}; it was trained on {pairs}")

    def encode(self, sentence: str, src_lang: str, tgt_lang: str) -> list[int]:
        """Source token ids as fairseq feeds them: [language token,] pieces, EOS."""
        ids = self.src_dict.encode_line(" ".join(self.pieces.encode(sentence)), add_if_not_exist=False,
                                        append_eos=True).tolist()
        spec = self.info.encoder_langtok if self.info.multilingual else None
        if spec:
            ids = [self._lang_id(src_lang if spec.startswith("src") else tgt_lang), *ids]
        return ids

    def translate(self, sentences: Sequence[str], src_lang: str, tgt_lang: str) -> list[Hypothesis]:
        self._check_pair(src_lang, tgt_lang)
        encoded = [self.encode(s, src_lang, tgt_lang) for s in sentences]
        return self.translate_ids(encoded, tgt_lang)

    def translate_ids(self, encoded: Sequence[Sequence[int]], tgt_lang: str) -> list[Hypothesis]:
        """Hypotheses for already-encoded sources (``encode``'s output, or binarised data)."""
        out: list[Hypothesis | None] = [None] * len(encoded)
        todo = []
        for i, ids in enumerate(encoded):
            if len(ids) > self.max_source:
                detail = f"source has {len(ids)} tokens; the model takes at most {self.max_source}"
                out[i] = Hypothesis("", None, detail, "too_long")
            elif len(ids) <= 1 + (1 if self.info.multilingual and self.info.encoder_langtok else 0):
                out[i] = Hypothesis("", None, "source is empty after tokenisation", "empty_source")
            else:
                todo.append(i)
        batches = token_budget_batches([len(encoded[i]) for i in todo], self.decoding.max_tokens,
                                       self.decoding.max_sentences, self.decoding.same_length)
        prefix = self._lang_id(tgt_lang) if self.info.multilingual and self.info.decoder_langtok else None
        results = [self._generate([encoded[todo[k]] for k in batch], prefix) for batch in batches]
        for k, hyp in enumerate(restore_order(batches, results)):
            out[todo[k]] = hyp
        return out  # type: ignore[return-value]

    def _generate(self, batch: list[Sequence[int]], prefix: int | None) -> list[Hypothesis]:
        """One model batch. Rows are ordered longest first, as fairseq's collater orders them."""
        import torch
        from fairseq.data import data_utils

        order = sorted(range(len(batch)), key=lambda k: -len(batch[k]))
        rows = [torch.tensor(batch[k], dtype=torch.long) for k in order]
        src = data_utils.collate_tokens(rows, self.src_dict.pad(), self.src_dict.eos(), left_pad=self.left_pad)
        sample = {
            "id": torch.arange(len(rows)),
            "net_input": {"src_tokens": src.to(self.device),
                          "src_lengths": torch.tensor([len(r) for r in rows]).to(self.device)},
        }
        prefix_tokens = None if prefix is None else torch.full((len(rows), 1), prefix, dtype=torch.long).to(self.device)
        with torch.inference_mode():
            hypos = self.generator.generate(self.models, sample, prefix_tokens=prefix_tokens)
        strip = None if prefix is None else {prefix}
        out: list[Hypothesis | None] = [None] * len(batch)
        for row, k in enumerate(order):
            best = hypos[row][0]
            text = self.tgt_dict.string(best["tokens"].int().cpu(), None, extra_symbols_to_ignore=strip)
            out[k] = Hypothesis(self.pieces.decode(text.split()), float(best["score"]))
        return out  # type: ignore[return-value]
