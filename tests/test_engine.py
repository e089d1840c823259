"""The engine's structure and training behaviour: no import cycle, resume reads last.pt once,
weight-decay groups, schedules, small datasets, progress, errors that name settings (library)
or flags (CLI), offline pretrained weights, RGNet's ASPP rates and other backbones."""

from __future__ import annotations

import ast
import json
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from aescore.cli.main import get_app
from helpers import make_tiny_ava
from aescore.engine.presets import build_config, get_preset
from aescore.errors import ConfigError, PretrainedWeightsUnavailable, UsageError

TINY = ["--backbone", "resnet10t", "--no-pretrained", "--crop-size", "32", "--resize-size", "40",
        "--workers", "0", "--device", "cpu"]
ENGINE = Path(__file__).resolve().parents[1] / "aescore" / "engine"


def _invoke(args: list) -> "CliRunner":
    return CliRunner().invoke(get_app(), [str(a) for a in args])


@pytest.fixture(scope="module")
def ava(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return make_tiny_ava(tmp_path_factory.mktemp("ava"))


# ---------------------------------------------------------------------------- structure


def _engine_imports(module: str) -> set[str]:
    tree = ast.parse((ENGINE / f"{module}.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_no_import_cycle_between_train_and_run() -> None:
    # train.py is the public entry and imports run.py; nothing below it imports train.py back.
    assert "aescore.engine.run" in _engine_imports("train")
    for module in ("run", "loop", "progress", "setup", "checkpoint"):
        assert "aescore.engine.train" not in _engine_imports(module), module


def test_dead_code_is_gone() -> None:
    import aescore.engine.distributed as distributed
    import aescore.engine.loop as loop
    import aescore.models.layers as layers
    import aescore.models.mpa as mpa
    import aescore.models.rgnet as rgnet

    assert not hasattr(distributed, "broadcast_object") and not hasattr(layers, "LSEPool")
    assert not hasattr(loop.EpochStats, "loss")
    assert not hasattr(mpa.MPANet, "set_grad_checkpointing") and not hasattr(rgnet.RGNet, "set_grad_checkpointing")


# ---------------------------------------------------------------------------- recipe pieces


def test_weight_decay_only_on_conv_and_fc_weights() -> None:
    from aescore.engine.setup import build_optimizer
    from aescore.models import create_model

    model = create_model("mpa_resnet18", backbone="resnet10t", pretrained=False)
    opt = build_optimizer(model, build_config("mpa-ada", backbone="resnet10t", pretrained=False))
    decayed, free = opt.param_groups
    assert decayed["weight_decay"] == 1e-4 and free["weight_decay"] == 0.0
    by_id = {id(p): name for name, p in model.named_parameters()}
    decayed_names = {by_id[id(p)] for p in decayed["params"]}
    free_names = {by_id[id(p)] for p in free["params"]}
    assert decayed_names | free_names == set(by_id.values()) and not decayed_names & free_names
    for name, module in model.named_modules():
        for pname, _ in module.named_parameters(recurse=False):
            full = f"{name}.{pname}" if name else pname
            expect = isinstance(module, (nn.Conv2d, nn.Linear)) and pname == "weight"
            assert (full in decayed_names) == expect, full
    assert "head.bias" in free_names and any("bn" in n for n in free_names)

    everything = build_optimizer(model, build_config("mpa-ada", backbone="resnet10t", weight_decay_scope="all"))
    assert len(everything.param_groups[0]["params"]) == len(list(model.parameters()))


def test_official_mpa_schedule() -> None:
    from aescore.engine.setup import build_scheduler

    param = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1e-3)
    sched = build_scheduler(opt, get_preset("mpa-ada-official"))
    lrs = []
    for _ in range(110):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == lrs[19] == 1e-3 and lrs[20] == lrs[39] == pytest.approx(5e-4)
    assert lrs[40] == lrs[59] == pytest.approx(1e-4) and lrs[60] == lrs[109] == pytest.approx(1e-5)


def test_small_datasets_keep_their_last_batch() -> None:
    from aescore.engine.setup import steps_per_epoch

    assert steps_per_epoch(60, 32) == (2, False)  # 32 + 28: nothing dropped
    assert steps_per_epoch(20, 32) == (1, False)
    assert steps_per_epoch(41, 4) == (10, True)  # a last batch of one image would break BatchNorm
    assert steps_per_epoch(60, 32, max_steps=1) == (1, False)


def test_progress_every_step_with_a_loss_from_the_first() -> None:
    from aescore.engine.distributed import DistInfo
    from aescore.engine.loop import make_loss, train_one_epoch

    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    batches = [({"image": torch.randn(2, 3, 4, 4), "label": torch.tensor([0, 1]),
                 "target": torch.zeros(2)}, []) for _ in range(12)]
    calls: list[tuple] = []
    train_one_epoch(model, batches, make_loss("ce", 0.5), torch.optim.SGD(model.parameters(), lr=0.1),
                    device=torch.device("cpu"), scaler=torch.amp.GradScaler("cpu", enabled=False), amp_dtype=None,
                    info=DistInfo(), on_progress=lambda *a: calls.append(a))
    assert [c[0] for c in calls] == list(range(1, 13))
    assert calls[0][1] is not None and calls[-1][2] == 24


def test_plain_progress_line_before_any_loss_and_with_lr() -> None:
    from aescore.engine.progress import EpochProgress

    lines: list[str] = []
    with EpochProgress(50, enabled=True, log=lines.append, plain_every=0.0, live=False) as progress:
        progress.start_epoch(1, 3, 0, lr=1e-3)
        progress.update(1, None, 4)
    assert "nan" not in lines[0] and "loss -" in lines[0] and "lr 0.001" in lines[0] and "ETA" in lines[0]


# ---------------------------------------------------------------------------- errors


def test_library_names_settings_and_cli_names_flags(ava: dict, tmp_path: Path) -> None:
    for kwargs, setting in ((dict(lr=-1.0), "lr"), (dict(variant="FCN-X"), "variant"), (dict(device="tpu"), "device"),
                            (dict(step_size=0), "step_size")):
        with pytest.raises(ConfigError) as err:
            build_config("rgnet", **kwargs)
        assert err.value.setting == setting and "--" not in str(err.value)
    res = _invoke(["train", "--dataset", "ava", "--root", ava["root"], "--output", tmp_path / "x", "--lr", -1])
    assert isinstance(res.exception, UsageError) and str(res.exception) == "--lr must be positive"
    res = _invoke(["train", "--dataset", "ava", "--root", ava["root"], "--output", tmp_path / "x", "--lr-step", 0])
    assert str(res.exception) == "--lr-step must be at least 1"
    res = _invoke(["train", "--dataset", "ava", "--root", ava["root"], "--output", tmp_path / "x", "--preset", "nope"])
    assert res.exit_code == 2 and "mpa-ada-official" in res.output  # a choice type lists the presets


def test_models_raise_domain_errors() -> None:
    from aescore.models import create_model
    from aescore.models.rgnet import RGNet

    with pytest.raises(ConfigError) as err:
        RGNet(variant="FCN-X")
    assert err.value.setting == "variant" and "--" not in str(err.value)
    with pytest.raises(ConfigError, match="model"):
        create_model("no_such_model")


def test_offline_pretrained_fails_fast_naming_the_flags(ava: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from huggingface_hub import constants

    from aescore.models import backbones

    def no_network(*_a, **_k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    t0 = time.perf_counter()
    with pytest.raises(PretrainedWeightsUnavailable) as err:
        backbones.create_backbone("resnet10t", pretrained=True)
    assert time.perf_counter() - t0 < 10 and "offline" in str(err.value) and "--" not in str(err.value)

    res = _invoke(["train", "--dataset", "ava", "--root", ava["root"], "--output", tmp_path / "run",
                   "--backbone", "resnet10t", "--crop-size", 32, "--resize-size", 40, "--workers", 0, "--device", "cpu"])
    assert res.exit_code == 1
    assert "--no-pretrained" in str(res.exception) and "--backbone-weights FILE" in str(res.exception)


# ---------------------------------------------------------------------------- RGNet options


def test_rgnet_aspp_rates_and_other_backbones() -> None:
    from aescore.engine.setup import build_model
    from aescore.models import create_model

    model = build_model(build_config("rgnet", pretrained=False, aspp_rates=[3, 6]))
    assert model.arch_args == {"aspp_rates": [3, 6]}
    convs = [m for m in model.context.modules() if isinstance(m, nn.Conv2d)]
    assert [c.dilation[0] for c in convs] == [3, 6] and model.num_features == 1024 + 2 * 64

    resnet = create_model("rgnet_densenet121", backbone="resnet18", graph_blocks=1, aspp_rates=[2])
    assert resnet.arch_args == {"backbone": "resnet18", "graph_blocks": 1, "aspp_rates": [2]}
    with torch.no_grad():
        assert resnet.eval().region_scores(torch.randn(1, 3, 64, 64)).shape == (1, 2, 8, 8)  # stride 8
    with pytest.raises(ConfigError, match="backbone"):
        create_model("rgnet_densenet121", backbone="vgg11")


# ---------------------------------------------------------------------------- a whole (tiny) run


def test_run_summary_small_batch_warning_and_resume_reads_once(ava: dict, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    res = _invoke(["train", "--dataset", "ava", "--root", ava["root"], "--output", out, "--epochs", 1,
                   "--batch-size", 64, "--json", *TINY])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert "larger than the training set" in res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert "best epoch 1" in last and "validation accuracy" in last and str(out / "best.safetensors") in last
    assert summary["best_weights"] == str(out / "best.safetensors")

    import aescore.weights as weights

    reads: list[Path] = []
    real = weights.load_checkpoint
    monkeypatch.setattr(weights, "load_checkpoint", lambda p: reads.append(Path(p)) or real(p))
    res = _invoke(["train", "--output", out, "--resume"])
    assert res.exit_code == 0 and "already trained 1" in res.stderr
    assert reads == [out / "last.pt"]
