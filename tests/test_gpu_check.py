"""``benchmarks/gpu_check.py --quick`` on a machine without a GPU (issue 30): the script runs the CPU
stand-ins of every GPU section (train, exact resume, torchrun DDP with gloo, rank with the torch
runtime, fp16/bf16 against fp32, AMP in the step loop), says that no GPU was found and names what
is left for one. No timing assertions: the structure and the correctness checks only."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"


@pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                    reason="torch.distributed with gloo is not available")
def test_gpu_check_quick_runs_the_cpu_stand_ins(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # its temporary folder lands here, and must be gone after
    # --cpu: the same answer on a machine that has a GPU (this test is about the no-GPU path)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--cpu", "--out", str(out)],
                          check=False, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    printed = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == printed  # --out writes the same object
    r = printed
    assert r["check"] == "gpu" and r["quick"] is True and r["ok"] is True and r["failures"] == []
    assert r["gpu"] is None and r["device"] == "cpu"
    assert ("no CUDA GPU found" in r["no_gpu"] if not torch.cuda.is_available() else "--cpu given" in r["no_gpu"])
    skipped = {s["item"] for s in r["skipped"]}
    assert {"train_amp_cuda", "peak_gpu_memory", "epoch_time_ava_gpu", "resume_exact_cuda", "ddp_nccl", "rank_gpu",
            "fp16_scoring_cuda", "bf16_scoring_cuda"} <= skipped
    assert all(s["needs"] == "a CUDA GPU" and s["what"] for s in r["skipped"])
    assert r["versions"]["torch"] == torch.__version__

    # training: the real `aescore train` of both presets, finite losses, the steps asked for
    for preset in ("mpa-ada", "rgnet"):
        t = r["train"][preset]
        assert t["ok"] and t["exit_status"] == 0 and t["device"] == "cpu" and t["precision"] == "fp32"
        assert t["loss_finite"] and math.isfinite(t["train_loss"]) and t["steps"] == r["sizes"]["steps"]
        assert t["images_per_s"] > 0 and t["peak_rss_mib"] > 0 and "peak_gpu_allocated_mib" not in t
        assert t["command"].startswith(f"aescore train --preset {preset} ")
        # exact resume: stopped after step N, resumed by the CLI, equal to the uninterrupted run
        res = r["resume"][preset]
        assert res["ok"] and res["exact"] is True and res["loss_abs_diff"] == 0.0 and res["max_abs_weight_diff"] == 0.0
        assert res["checkpoint_position"] == {"epochs_done": 0, "step": res["checkpoint_after_step"]}
        assert res["step_after_checkpoint_loss_resumed"] == res["step_after_checkpoint_loss_uninterrupted"]
        assert "from epoch 1 step" in res["resumed_run_said"]
    assert r["summary"]["resume_exact"] is True and r["summary"]["losses_finite"] is True

    # torchrun --nproc_per_node 1 goes through DDP (gloo on the CPU), with the single-process loss
    ddp = r["ddp"]
    assert ddp["ok"] and ddp["ddp_backend"] == "gloo" and ddp["world_size"] == 1 and ddp["card_world_size"] == 1
    assert ddp["loss_finite"] and ddp["same_loss_as_single_process_run"] is True
    assert ddp["command"].startswith("torchrun --standalone --nproc_per_node 1 -m aescore train")

    # rank with the torch runtime on the CPU; what limits it
    rank = r["rank"]
    assert rank["ok"] and "gpu" not in rank
    assert rank["cpu"]["scored"] == rank["photos"] == r["sizes"]["photos"] and rank["cpu"]["photos_per_s"] > 0
    assert rank["limits"]["decode_photos_per_s_all_cores"] > 0 and rank["limits"]["network_photos_per_s"] > 0
    assert rank["limits"]["bottleneck"] in ("decode", "network") and rank["scorer_steady_photos_per_s"] > 0

    # reduced precision against float32, within 1e-3 in P(high)
    prec = r["precision"]
    assert prec["ok"] and prec["tolerance"] == 1e-3
    assert set(prec["models"]) == {"default", "trained-mpa-ada", "trained-rgnet"}
    for name, m in prec["models"].items():
        kinds = ("bf16_autocast",) if name == "default" else ("fp16", "bf16_autocast")
        for kind in kinds:
            assert m[kind]["within_tolerance"] and m[kind]["max_abs_diff"] <= 1e-3
        if name != "default":
            assert m["fp16"]["weights_dtype"] == "float16"

    # the AMP code of the step loop (autocast, GradScaler, channels_last) on the CPU
    amp = r["amp_cpu"]
    assert amp["ok"] and amp["channels_last"] is True
    assert {(c["preset"], c["autocast"]) for c in amp["cases"]} == {("mpa-ada", "float16"), ("rgnet", "bfloat16")}
    assert all(c["loss_finite"] and c["steps"] == 2 for c in amp["cases"])

    choice = r["runtime_choice"]
    assert choice["ok"] and choice["auto_runtime"] == {"score": "onnx", "report": "onnx"}  # no CUDA GPU here

    # nothing left behind in the temporary folder
    assert not list(tmp_path.glob("aescore-gpu-check-*"))
