"""Training pairs of the default model and its training script (issue 12)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from aescore.data.fault_pairs import FaultPairs
from aescore.data.transforms import Preprocess
from aescore.data.fault_kinds import FAULT_KINDS
from tests.helpers import pattern

REPO = Path(__file__).resolve().parents[1]


def _photos(folder: Path, n: int = 3) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"p{i}.jpg"
        Image.fromarray(pattern(300, 240, i)).save(p, quality=95)
        paths.append(str(p))
    return paths


RECIPE = {"mean": [0.5] * 3, "std": [0.5] * 3,
          "eval": {"mode": "shorter", "size": 96, "max_aspect": 1.5, "detail": {"crops": 2, "size": 64}}}


def test_fault_pairs_items_follow_the_recipe_and_are_deterministic(tmp_path: Path) -> None:
    data = FaultPairs(_photos(tmp_path), Preprocess.from_card(RECIPE), length=4, seed=3)
    gw, gc, bw, bc, labels = data[1]
    assert tuple(gw.shape) == tuple(bw.shape) == (3, 96, 96)  # square cut of the whole-frame view
    assert tuple(gc.shape) == tuple(bc.shape) == (2, 3, 64, 64)
    assert labels.shape == (len(FAULT_KINDS),) and 1 <= labels.sum() <= 3 and set(labels.tolist()) <= {0.0, 1.0}
    again = data[1]
    assert all(torch.equal(a, b) for a, b in zip(data[1], again))
    assert not torch.equal(gw, bw) or not torch.equal(gc, bc)  # the copy differs from the good version
    data.set_epoch(1)
    assert any(not torch.equal(a, b) for a, b in zip(data[1], again))  # another epoch, other faults


def test_training_script_refuses_unknown_positives_in_one_line(tmp_path: Path) -> None:
    script = REPO / "scripts" / "train_default_model.py"
    done = subprocess.run([sys.executable, str(script), "--photos", str(tmp_path), "--positives", "bokeh",
                           "--out", str(tmp_path / "run")], env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True)
    assert done.returncode == 2 and "--positives takes" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()


def test_training_script_trains_resumes_and_writes_a_scoring_model(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    _photos(photos, 4)
    (tmp_path / "held.txt").write_text("p3.jpg\n")
    out = tmp_path / "run"
    base = [sys.executable, str(REPO / "scripts" / "train_default_model.py"), "--photos", str(photos),
            "--exclude", str(tmp_path / "held.txt"), "--backbone", "resnet10t", "--no-pretrained",
            "--pairs", "2", "--workers", "0", "--save-every", "1", "--out", str(out)]
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    first = subprocess.run(base + ["--steps", "2", "--minutes", "0.0001"], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert "time limit" in first.stderr and not (out / "model.safetensors").exists()
    second = subprocess.run(base + ["--steps", "2"], env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert "resumed at step 1" in second.stderr
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]
    assert (out / "train-photos.txt").read_text().split() == ["p0.jpg", "p1.jpg", "p2.jpg"]

    from aescore.inference.core import Job, infer
    from aescore.inference.loading import open_model

    model = open_model(out / "model.safetensors", "cpu", "torch")
    assert model.card["architecture"] == "faultnet" and model.card["training"]["steps"] == 2
    [result] = infer(model, [Job(str(photos / "p3.jpg"))], want=frozenset({"p_high", "faults"}), workers=0)
    assert 0 <= result.outputs["p_high"] <= 1 and np.all((result.outputs["faults"] >= 0) & (result.outputs["faults"] <= 1))
