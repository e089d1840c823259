"""`aescore train`: presets, the loop end to end, checkpoints, exact resume, NaN stop, AADB and CSV data."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from aescore.cli.main import get_app
from helpers import make_tiny_aadb, make_tiny_ava, make_tiny_csv
from aescore.engine.presets import PRESETS, build_config, get_preset
from aescore.engine.setup import build_scheduler
from aescore.engine.train import fit, resume_config
from aescore.errors import AescoreError, UsageError
from aescore.weights import load_checkpoint, load_weights, read_card

# A tiny model at a tiny image size keeps every run to a few seconds on one CPU core.
TINY = ["--backbone", "resnet10t", "--no-pretrained", "--crop-size", "32", "--resize-size", "40",
        "--workers", "0", "--device", "cpu", "--deterministic"]
TINY_KW = dict(backbone="resnet10t", pretrained=False, crop_size=32, resize_size=40, workers=0, device="cpu",
               deterministic=True)


@pytest.fixture(scope="module")
def ava(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return make_tiny_ava(tmp_path_factory.mktemp("ava"))


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _invoke(args: list[str]):
    return CliRunner().invoke(get_app(), [str(a) for a in args])


# ---------------------------------------------------------------------------- presets


def test_presets_carry_the_papers_recipes() -> None:
    for name in ("mpa-avg", "mpa-min", "mpa-ada"):
        cfg = get_preset(name)
        assert (cfg.model, cfg.optimizer, cfg.nesterov, cfg.momentum) == ("mpa_resnet18", "sgd", True, 0.9)
        assert (cfg.lr, cfg.weight_decay, cfg.batch_size, cfg.epochs, cfg.beta) == (1e-3, 1e-4, 32, 32, 0.5)
        assert (cfg.schedule, cfg.step_size, cfg.gamma, cfg.threshold_inclusive) == ("step", 20, 0.5, False)
        assert cfg.objective == "mp_" + name.split("-")[1]
    rg = get_preset("rgnet")
    assert (rg.model, rg.objective, rg.optimizer, rg.lr, rg.weight_decay) == ("rgnet_densenet121", "ce", "adam", 1e-4, 1e-5)
    assert (rg.schedule, rg.poly_power, rg.batch_size, rg.epochs, rg.threshold_inclusive) == ("poly", 0.9, 32, 80, True)
    assert set(PRESETS) == {"mpa-avg", "mpa-min", "mpa-ada", "mpa-ada-official", "rgnet"}
    # The authors' released code (Openning07/MPADA), where it differs from the paper.
    off = get_preset("mpa-ada-official")
    assert (off.objective, off.threshold_inclusive, off.patches, off.batch_size, off.epochs) == ("mp_ada", True, 1, 64, 110)
    assert (off.schedule, off.lr, off.lr_milestones) == ("milestones", 1e-3, [[20, 5e-4], [40, 1e-4], [60, 1e-5]])
    assert (off.weight_decay, off.weight_decay_scope, off.nesterov, off.momentum) == (1e-4, "weights", True, 0.9)


def test_overrides_and_validation() -> None:
    cfg = build_config("mpa-ada", lr=0.1, epochs=3, patches=None)
    assert (cfg.lr, cfg.epochs, cfg.patches) == (0.1, 3, 4)
    assert get_preset("mpa-ada").lr == 1e-3  # presets are copied, never mutated
    with pytest.raises(UsageError):
        build_config("nope")
    with pytest.raises(UsageError):
        build_config("mpa-ada", epochs=0)
    with pytest.raises(UsageError):
        build_config("mpa-ada", objective="hinge")


def test_schedules_follow_the_papers() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1e-3)
    step = build_scheduler(opt, get_preset("mpa-ada"))
    lrs = []
    for _ in range(41):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()  # no gradient: changes nothing, but keeps the scheduler's call order check quiet
        step.step()
    assert lrs[0] == lrs[19] == 1e-3 and lrs[20] == lrs[39] == 5e-4 and lrs[40] == 2.5e-4

    opt = torch.optim.Adam([param], lr=1e-4)
    poly = build_scheduler(opt, get_preset("rgnet"))
    for epoch in range(80):
        assert opt.param_groups[0]["lr"] == pytest.approx(1e-4 * (1 - epoch / 80) ** 0.9)
        opt.step()
        poly.step()


# ---------------------------------------------------------------------------- end to end


def test_train_then_evaluate_end_to_end(ava: dict, tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = _invoke(["train", "--dataset", "ava", "--root", ava["root"], "--preset", "mpa-avg", "--output", out,
                   "--epochs", 3, "--batch-size", 8, "--lr", 0.01, "--patches", 2, "--json", *TINY])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["epochs_done"] == 3 and summary["interrupted"] is False
    rows = _rows(out)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]  # it learns
    for key in ("train_loss", "val_accuracy", "val_average_precision", "val_srcc", "val_lcc", "images_per_s",
                "seconds", "n_skipped"):
        assert key in rows[0]
    assert rows[0]["n_skipped"] >= ava["n_skipped_at_index"]
    # Not a TTY: one plain line per epoch on stderr, no progress bar.
    assert res.stderr.count("epoch ") >= 3 and "train loss" in res.stderr

    card = read_card(out / "best.json")
    tr = card["training"]
    assert tr["dataset"] == "ava" and tr["preset"] == "mpa-avg" and tr["objective"] == "mp_avg"
    assert tr["data"] == Path(ava["root"]).name and tr["hyperparameters"]["root"] == Path(ava["root"]).name
    assert tr["hyperparameters"]["lr"] == 0.01 and tr["hyperparameters"]["patches"] == 2
    assert "--preset" in tr["command"]
    assert set(tr["split_fingerprints"]) == {"train", "val", "test"}
    assert tr["train_ids_fingerprint"] == tr["split_fingerprints"]["train"]
    assert summary["split_fingerprints"] == tr["split_fingerprints"] and summary["n_skipped"] == rows[-1]["n_skipped"]
    assert tr["split_fingerprints"]["train"][:12] in res.stderr  # printed when the run starts
    best_row = max(rows, key=lambda r: r["val_accuracy"])
    assert card["metrics"]["validation"]["accuracy"] == best_row["val_accuracy"]
    assert tr["epoch"] == next(r["epoch"] for r in rows if r["is_best"] and r["val_accuracy"] == best_row["val_accuracy"])
    assert card["preprocess"]["train"]["crop"] == 32 and card["name"] and card["summary"]
    ids = (out / tr["train_ids_file"]["path"]).read_text().splitlines()
    assert ids == sorted(ids) and len(ids) == card["training"]["split_sizes"]["train"]
    model, _ = load_weights(out / "best.safetensors")
    assert model.arch_args["backbone"] == "resnet10t"

    res = _invoke(["evaluate", "--dataset", "ava", "--root", ava["root"], "--weights", out / "best.safetensors",
                   "--workers", 0, "--device", "cpu", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    for key in ("accuracy", "average_precision", "srcc", "lcc", "split_fingerprint", "n_images", "n_skipped",
                "balanced_accuracy", "confusion_matrix", "weights_sha256"):
        assert key in report
    assert report["split_fingerprint"] == tr["split_fingerprints"]["test"]
    assert report["train_overlap_check"] == "checked"
    assert report["accuracy"] > 0.5  # bright/sharp vs dark/blurred is learnable

    # The training split itself, or part of it, is refused.
    res = _invoke(["evaluate", "--dataset", "ava", "--root", ava["root"], "--weights", out / "best.safetensors",
                   "--workers", 0, "--split", "train", "--max-items", 5, "--json"])
    assert res.exit_code != 0 and "training set" in str(res.exception)

    # A second run into the same folder without --resume is refused; --resume when done says so.
    res = _invoke(["train", "--dataset", "ava", "--root", ava["root"], "--output", out, *TINY])
    assert isinstance(res.exception, UsageError) and "--resume" in str(res.exception)
    res = _invoke(["train", "--output", out, "--resume"])
    assert res.exit_code == 0 and "already trained 3" in res.stderr
    res = _invoke(["train", "--output", out, "--resume", "--preset", "rgnet"])
    assert isinstance(res.exception, UsageError) and "preset cannot change" in str(res.exception)


def test_precision_and_model_options() -> None:
    from aescore.engine.setup import build_model, resolve_amp

    cuda = torch.device("cuda")  # only inspected, never used
    assert resolve_amp(None, torch.device("cpu")) is None and resolve_amp(False, cuda) is None
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
        assert resolve_amp(None, cuda) == torch.bfloat16
        mp.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
        assert resolve_amp(True, cuda) == torch.float16  # fp16: the loop then enables a GradScaler

    # Table 1 ablations and Fig. 5 sweeps are training options; the card's arch_args record them.
    cfg = build_config("rgnet", dataset="ava", root="x", pretrained=False, variant="FCN-G", graph_blocks=2, lse_r=8.0)
    model = build_model(cfg)
    assert model.variant == "FCN-G" and len(model.graph) == 2 and model.lse_r == 8.0
    assert model.arch_args == {"variant": "FCN-G", "graph_blocks": 2, "lse_r": 8.0}
    assert build_model(build_config("mpa-avg", pretrained=False, backbone="resnet10t")).arch_args == {"backbone": "resnet10t"}
    with pytest.raises(UsageError, match="variant must be one of"):  # the library names the setting, not the flag
        build_config("rgnet", variant="FCN-X")
    with pytest.raises(UsageError, match="rgnet preset only"):
        build_config("mpa-ada", graph_blocks=2)


def test_plain_progress_lines_without_a_terminal() -> None:
    from aescore.engine.progress import EpochProgress

    lines: list[str] = []
    with EpochProgress(100, enabled=True, log=lines.append, plain_every=0.0) as progress:
        progress.start_epoch(2, 5, 0)
        progress.update(10, 0.6931, 320)
    assert len(lines) == 1
    assert lines[0].startswith("epoch 2/5 step 10/100: loss 0.6931") and "img/s" in lines[0] and "ETA" in lines[0]


# ---------------------------------------------------------------------------- resume


def _cfg(ava: dict, epochs: int, **kw):
    base = dict(dataset="ava", root=str(ava["root"]), epochs=epochs, batch_size=4, lr=0.01, patches=2, **TINY_KW)
    base.update(kw)
    return build_config("mpa-min", **base)


def _same_state(a: Path, b: Path) -> bool:
    sa, sb = load_checkpoint(a / "last.pt"), load_checkpoint(b / "last.pt")
    models = all(torch.equal(sa["model"][k], sb["model"][k]) for k in sa["model"])
    moms = [torch.equal(x["momentum_buffer"], y["momentum_buffer"])
            for x, y in zip(sa["optimizer"]["state"].values(), sb["optimizer"]["state"].values())]
    return models and all(moms) and sa["epoch"] == sb["epoch"]


def test_resume_is_bit_exact(ava: dict, tmp_path: Path) -> None:
    fit(_cfg(ava, 2), tmp_path / "straight", command="test")
    fit(_cfg(ava, 1), tmp_path / "split", command="test")
    assert len(_rows(tmp_path / "split")) == 1
    fit(resume_config(tmp_path / "split", epochs=2), tmp_path / "split", resume=True, command="test")
    assert _same_state(tmp_path / "straight", tmp_path / "split")
    ra, rb = _rows(tmp_path / "straight"), _rows(tmp_path / "split")
    for a, b in zip(ra, rb):
        for key in ("train_loss", "val_accuracy", "val_srcc", "lr"):
            assert a[key] == b[key]

    # Ctrl-C mid-epoch: a checkpoint at the step boundary; resuming reaches the very same weights.
    calls = [0]

    def interrupt(step: int) -> None:
        calls[0] += 1
        if calls[0] == 14:  # epoch 2, step 3 (11 steps per epoch: 43 images at batch 4, the last batch partial)
            signal.raise_signal(signal.SIGINT)

    handler = signal.getsignal(signal.SIGINT)  # Python's default, unless this process was started ignoring SIGINT
    res = fit(_cfg(ava, 2), tmp_path / "ctrl-c", command="test", on_step=interrupt)
    assert res.interrupted and res.epochs_done == 1
    state = load_checkpoint(tmp_path / "ctrl-c" / "last.pt")
    assert (state["epoch"], state["step"]) == (1, 3)
    assert signal.getsignal(signal.SIGINT) is handler  # handler restored
    fit(resume_config(tmp_path / "ctrl-c"), tmp_path / "ctrl-c", resume=True, command="test")
    assert _same_state(tmp_path / "straight", tmp_path / "ctrl-c")
    assert [r["epoch"] for r in _rows(tmp_path / "ctrl-c")] == [1, 2]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_stop_signal_reaching_dataloader_workers_still_saves(
    ava: dict, tmp_path: Path, capfd: pytest.CaptureFixture, sig: int
) -> None:
    # A terminal's Ctrl-C is delivered to the whole process group, and a scheduler's pre-emption
    # SIGTERM to every process of the job, DataLoader workers included. Workers ignore both, so
    # they keep feeding the loop until the main process stops at a step boundary and saves (a
    # worker that quit would make the next batch fail; a forked worker that inherited the main
    # process's handler would announce a second stop of its own).
    import multiprocessing
    import os

    calls = [0]

    def interrupt(step: int) -> None:
        calls[0] += 1
        if calls[0] == 2:
            workers = multiprocessing.active_children()
            assert workers
            for child in workers:
                os.kill(child.pid, sig)
        if calls[0] == 8:  # later than the batches already prefetched when the workers got it
            signal.raise_signal(sig)

    res = fit(_cfg(ava, 1, workers=1), tmp_path / "w", command="test", on_step=interrupt)
    assert res.interrupted
    state = load_checkpoint(tmp_path / "w" / "last.pt")
    assert (state["epoch"], state["step"]) == (0, 8)
    assert capfd.readouterr().err.count("stop requested") == 1  # the main process's, no worker's


def test_resume_refuses_other_data_or_model(ava: dict, tmp_path: Path) -> None:
    fit(_cfg(ava, 1, max_steps=1), tmp_path / "r", command="test")
    with pytest.raises(UsageError, match="threshold_inclusive"):
        fit(resume_config(tmp_path / "r", epochs=2, threshold_inclusive=True), tmp_path / "r", resume=True)
    with pytest.raises(UsageError, match="no checkpoint"):
        resume_config(tmp_path / "nothing-here")


def test_nan_loss_stops_without_exporting(ava: dict, tmp_path: Path) -> None:
    res = _invoke(["train", "--dataset", "ava", "--root", ava["root"], "--output", tmp_path / "nan", "--epochs", 1,
                   "--batch-size", 4, "--lr", 1e30, "--preset", "mpa-avg", *TINY])
    assert isinstance(res.exception, AescoreError)
    assert "NaN/inf" in str(res.exception)
    assert not (tmp_path / "nan" / "best.safetensors").exists()
    assert not (tmp_path / "nan" / "last.pt").exists()


# ---------------------------------------------------------------------------- other data


def test_aadb_regression_trains_with_mse(tmp_path: Path) -> None:
    data = make_tiny_aadb(tmp_path / "aadb", n_train=24, n_val=8, n_test=8)
    out = tmp_path / "run"
    res = _invoke(["train", "--dataset", "aadb", "--root", data["root"], "--preset", "rgnet", "--output", out,
                   "--epochs", 1, "--batch-size", 4, "--max-steps", 3, "--lr", 1e-3, "--no-pretrained",
                   "--crop-size", 40, "--workers", 0, "--device", "cpu"])
    assert res.exit_code == 0, res.output
    card = read_card(out / "best.json")
    assert card["training"]["objective"] == "mse" and card["training"]["task"] == "regression"
    assert card["architecture"] == "rgnet_densenet121" and card["preprocess"]["eval"]["size"] == 40
    row = _rows(out)[0]
    assert row["val_srcc"] is not None and 0 <= row["train_loss"] <= 1
    res = _invoke(["evaluate", "--dataset", "aadb", "--root", data["root"], "--weights", out / "best.json",
                   "--workers", 0, "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["task"] == "regression" and report["n_images"] == 8 and report["srcc"] is not None


def test_csv_photos_train_and_evaluate(tmp_path: Path) -> None:
    data = make_tiny_csv(tmp_path / "csv", n=30, column="label")
    out = tmp_path / "run"
    res = _invoke(["train", "--dataset", "csv", "--root", data["root"], "--preset", "mpa-ada", "--output", out,
                   "--epochs", 1, "--batch-size", 4, "--max-steps", 2, *TINY])
    assert res.exit_code == 0, res.output
    card = read_card(out / "best.json")
    assert card["training"]["dataset"] == "csv" and card["training"]["objective"] == "mp_ada"
    res = _invoke(["evaluate", "--dataset", "csv", "--root", data["root"], "--weights", out / "best.safetensors",
                   "--workers", 0, "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    # The seeded test split of training time is found again from the card.
    assert report["split_fingerprint"] == card["training"]["split_fingerprints"]["test"]
