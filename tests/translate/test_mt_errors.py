"""Sharp edges of ``m3curate mt translate``: each mistake gets one line saying what to do.

- a CTranslate2 folder without ``--engine ctranslate2`` (and a fairseq one with it);
- ``--device cuda`` where there is no CUDA (fairseq and CTranslate2);
- a CTranslate2 ``compute_type`` the CPU cannot run (``float16``).

Only the folders' file names matter up to the point where these are caught, so the
folders here are made of empty or minimal files, no model is trained.
"""

from __future__ import annotations

import json

import pytest

from translate.checkpoint import ModelDirError


def main(argv: list[str], capsys) -> str:
    """The real CLI's one error line (its stderr) for ``argv``, which must fail."""
    from curation.cli import main as cli_main

    assert cli_main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def ct2_folder(path):
    """What ``m3curate mt convert`` leaves, as far as the engines read before loading."""
    path.mkdir()
    for name in ("model.bin", "config.json"):
        (path / name).write_text("{}", encoding="utf-8")
    meta = {"info": {"task": "translation", "pairs": [["en", "de"]], "langs": ["en", "de"],
                     "lang_tok_style": "multilingual", "encoder_langtok": None, "decoder_langtok": False},
            "max_source_positions": 1024}
    (path / "m3curate_mt.json").write_text(json.dumps(meta), encoding="utf-8")
    return path


def translate_args(model, *extra: str) -> list[str]:
    return ["mt", "translate", "--model", str(model), "--src", "en", "--tgt", "de", "--input", "/dev/null", *extra]


def test_a_ctranslate2_folder_without_the_engine_flag_names_it(tmp_path, capsys):
    ct2 = ct2_folder(tmp_path / "ct2")
    err = main(translate_args(ct2), capsys)
    assert "is a CTranslate2 model (it has model.bin and config.json)" in err
    assert "pass --engine ctranslate2" in err and "ModelDirError" in err
    plain = tmp_path / "empty"
    plain.mkdir()
    with pytest.raises(ModelDirError, match="no checkpoint model.pt or checkpoint_best.pt or checkpoint_last.pt in it$"):
        from translate.checkpoint import find_checkpoint

        find_checkpoint(plain)


def test_a_fairseq_folder_with_the_ctranslate2_engine_names_fairseq(tmp_path, capsys):
    fs = tmp_path / "fs"
    fs.mkdir()
    (fs / "checkpoint_best.pt").write_bytes(b"")
    err = main(translate_args(fs, "--engine", "ctranslate2"), capsys)
    assert "holds a fairseq checkpoint: use --engine fairseq" in err and "m3curate mt convert" in err


def test_cuda_without_cuda_says_what_to_do(tmp_path, capsys):
    import ctranslate2
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the error cannot happen")
    model = tmp_path / "fs"
    model.mkdir()
    err = main(translate_args(model, "--device", "cuda"), capsys)
    assert "device = 'cuda', but this PyTorch was built without CUDA" in err or "PyTorch sees no CUDA GPU" in err
    assert "use --device cpu" in err and "AssertionError" not in err
    if ctranslate2.get_cuda_device_count() == 0:
        err = main(translate_args(ct2_folder(tmp_path / "ct2"), "--engine", "ctranslate2", "--device", "cuda"), capsys)
        assert "CTranslate2 sees no CUDA GPU here: use --device cpu" in err


def test_a_16_bit_compute_type_on_cpu_says_what_to_do(tmp_path, capsys):
    from translate.ct2_engine import CT2Translator

    ct2 = ct2_folder(tmp_path / "ct2")
    err = main(translate_args(ct2, "--engine", "ctranslate2", "--compute-type", "float16"), capsys)
    assert "mt.compute_type = 'float16': CTranslate2 has no 16-bit computation on CPU" in err
    assert '"default", "int8" or "float32" (--compute-type)' in err
    # the engine itself asks CTranslate2 what this CPU runs (reached without the config's check)
    with pytest.raises(ValueError, match=r"compute_type = 'float16' does not run on cpu here \(it supports "
                                         r".*float32.*\): use --compute-type default"):
        CT2Translator(ct2, compute_type="float16")
