"""`m3curate lid train|eval|predict` end to end on generated labelled text."""

from __future__ import annotations

import json

from curation.cli import main
from curation.demo.writers import write_lid_training_data


def test_train_eval_predict(tmp_path, capsys):
    train, held = tmp_path / "train.tsv", tmp_path / "held.tsv"
    write_lid_training_data(str(train), 1200, 1)
    write_lid_training_data(str(held), 200, 2)
    model = tmp_path / "new" / "a" / "lid.bin"  # a missing folder is made
    assert main(["lid", "train", "--data", str(train), "--out", str(model)]) == 0
    assert "in 4 languages" in capsys.readouterr().out
    assert main(["lid", "eval", "--model", str(model), "--data", str(held), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["accuracy"] > 0.9 and set(report["languages"]) == {"en", "de", "fr", "es"}
    texts = tmp_path / "in.txt"
    texts.write_text("a small red circle on the left\nein kleiner roter Kreis links\n")
    assert main(["lid", "predict", "--model", str(model), "--in", str(texts)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["en", "de"]
    out = tmp_path / "preds" / "out.tsv"
    assert main(["lid", "predict", "--model", str(model), "--in", str(texts), "--out", str(out)]) == 0
    assert [line.split("\t")[0] for line in out.read_text().splitlines()] == ["en", "de"]
