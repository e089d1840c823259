"""Two-process CPU DDP (gloo) under torchrun: the same `aescore train` command, rank 0 writes once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

from helpers import make_tiny_ava
from aescore.weights import read_card

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="torch.distributed with gloo is not available"
)


def test_two_process_gloo_run(tmp_path: Path) -> None:
    data = make_tiny_ava(tmp_path / "ava")
    out = tmp_path / "run"
    cmd = [
        # `torchrun --standalone --nproc_per_node 2 -m aescore train ...`, as docs/training.md shows
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "aescore", "train",
        "--dataset", "ava", "--root", str(data["root"]), "--output", str(out), "--epochs", "2",
        "--batch-size", "4", "--max-steps", "3", "--backbone", "resnet10t", "--no-pretrained",
        "--crop-size", "32", "--resize-size", "40", "--workers", "0", "--device", "cpu", "--json",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    # Only rank 0 prints the summary and writes files: one JSON line, one metrics row per epoch.
    summaries = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1 and summaries[0]["epochs_done"] == 2
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    # Validation predictions are gathered from both ranks: every decodable val image is counted once.
    card = read_card(out / "best.json")
    assert card["training"]["world_size"] == 2
    assert rows[0]["val_n_images"] == card["metrics"]["validation"]["n_images"]
    assert rows[0]["val_n_images"] >= card["training"]["split_sizes"]["val"] - 1  # minus the truncated image
    assert (out / "best.safetensors").is_file() and (out / "last.pt").is_file()
