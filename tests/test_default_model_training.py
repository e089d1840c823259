"""The default model's recipe (scripts/train_default_model.py) trains through the engine's one loop
(issue #23): the same losses as the script's own loop had, step for step, and an exact resume
from the checkpoint (RNG states included). At a tiny size: a small random backbone, four photos."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from helpers import load_script, pattern

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script() -> Any:
    return load_script("train_default_model")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for i in range(4):
        Image.fromarray(pattern(300, 240, i)).save(folder / f"p{i}.jpg", quality=95)
    return folder


def _args(photos: Path, out: Path, *extra: str) -> list[str]:
    return ["--photos", str(photos), "--backbone", "resnet10t", "--no-pretrained", "--pairs", "2", "--workers", "0",
            "--device", "cpu", "--save-every", "100", "--out", str(out), *extra]


def _old_losses(model: Any, batch: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """The script's loss before the engine took over its loop (verbatim, without --cross-pairs)."""
    from aescore.models.contract import ModelInputs

    gw, gc, bw, bc, labels = batch
    b = gw.shape[0]
    out = model.forward_outputs(ModelInputs(torch.cat([gw, bw]), torch.cat([gc, bc])), ("faults",))
    target = torch.cat([torch.ones(b), torch.zeros(b)]).long()
    ce = F.cross_entropy(out.logits, target)
    d = out.logits[:, 1]
    rank = F.softplus(-(d[:b] - d[b:])).mean()
    fault_target = torch.cat([torch.zeros_like(labels), labels])
    bce = F.binary_cross_entropy_with_logits(out.faults, fault_target)
    return ce + rank + bce, {"ce": ce.item(), "rank": rank.item(), "bce": bce.item()}


def _old_loop(script: Any, photos: Path, steps: int) -> tuple[list[float], dict[str, torch.Tensor]]:
    """The script's own training loop before the engine took it over (verbatim, less the files it
    wrote): its losses, step by step, and the weights it ended with."""
    from aescore.data.fault_pairs import FaultPairs
    from aescore.data.faults import POSITIVE_KINDS
    from aescore.data.transforms import Preprocess
    from aescore.models import create_model

    seed, pairs, lr = 0, 2, 4e-4
    torch.manual_seed(seed)
    paths = sorted(str(p) for p in photos.iterdir())
    model = create_model("faultnet", backbone="resnet10t", pretrained=False)
    recipe = Preprocess.from_card(model.default_preprocess)
    data = FaultPairs(paths, recipe, length=pairs * 100, seed=seed, positive_kinds=POSITIVE_KINDS)
    heads = [p for n, p in model.named_parameters() if n.startswith(("head.", "fault_head."))]
    model.train()
    script.freeze(model, 3)
    body = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith(("head.", "fault_head."))]
    opt = torch.optim.AdamW([{"params": body, "lr": lr}, {"params": heads, "lr": lr * 5}], weight_decay=1e-4)
    base_lrs = [g["lr"] for g in opt.param_groups]
    step, losses = 0, []
    while step < steps:
        data.set_epoch(step // 100)
        loader = torch.utils.data.DataLoader(data, batch_size=pairs, num_workers=0, persistent_workers=False, prefetch_factor=None)
        for i, batch in enumerate(loader):
            if i < step % 100:
                continue
            warm = min(1.0, (step + 1) / 30)
            cos = 0.5 * (1 + math.cos(math.pi * step / steps))
            for g, base in zip(opt.param_groups, base_lrs):
                g["lr"] = base * warm * (0.05 + 0.95 * cos)
            loss, _parts = _old_losses(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            losses.append(loss.item())
            if step >= steps:
                break
    return losses, model.state_dict()


def _weights(out: Path) -> dict[str, torch.Tensor]:
    from aescore.weights import load_checkpoint

    return load_checkpoint(out / "last.pt")["model"]


def test_engine_loop_gives_the_old_script_loop_losses(script: Any, photos: Path, tmp_path: Path) -> None:
    old, old_weights = _old_loop(script, photos, 3)
    new: list[float] = []
    assert script.main(_args(photos, tmp_path / "run", "--steps", "3"), on_step=lambda done: new.append(done.loss.item())) == 0
    assert new == old  # same seed: the same losses, bit for bit
    weights = _weights(tmp_path / "run")
    assert weights.keys() == old_weights.keys()
    assert all(torch.equal(weights[k], old_weights[k]) for k in weights)


def test_default_model_recipe_resumes_exactly(script: Any, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    straight: list[float] = []
    assert script.main(_args(photos, tmp_path / "a", "--steps", "4"), on_step=lambda done: straight.append(done.loss.item())) == 0
    assert script.main(_args(photos, tmp_path / "b", "--steps", "4", "--stop-at", "2")) == 0
    assert "stopped at step 2 of 4 (--stop-at 2)" in capsys.readouterr().err
    assert not (tmp_path / "b" / "model.safetensors").exists()
    resumed: list[float] = []
    assert script.main(_args(photos, tmp_path / "b", "--steps", "4"), on_step=lambda done: resumed.append(done.loss.item())) == 0
    assert "resumed at step 2" in capsys.readouterr().err
    assert len(straight) == 4 and resumed == straight[2:]  # the loss at step 4 (and 3) equal bit for bit
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    from aescore.weights import load_checkpoint

    saved = load_checkpoint(tmp_path / "b" / "last.pt")
    assert saved["step"] == 4 and {"torch", "numpy", "python"} <= set(saved["rng"])


def test_a_later_stage_starts_from_trained_weights_without_their_branches(script: Any, photos: Path, tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """``--init``: a trained network with an exposure branch (left out) is where the next stage starts;
    at a learning rate of 0 the stage ends with exactly the weights it started from."""
    from safetensors.torch import load_file

    from aescore.models import create_model
    from aescore.weights import save_weights

    assert script.main(_args(photos, tmp_path / "a", "--steps", "2")) == 0
    trained = load_file(str(tmp_path / "a" / "model.safetensors"))
    branched = create_model("faultnet", backbone="resnet10t", tone_branch=4)
    assert branched.load_state_dict(trained, strict=False).missing_keys  # the branch's tensors, new
    save_weights(branched, tmp_path / "init.safetensors", {"name": "init", "training": {"dataset": "none"}})
    assert script.main(_args(photos, tmp_path / "b", "--steps", "1", "--lr", "0", "--init", str(tmp_path / "init.safetensors"))) == 0
    again = load_file(str(tmp_path / "b" / "model.safetensors"))
    assert again.keys() == trained.keys() and all(torch.equal(again[k], trained[k]) for k in trained)
    other = create_model("faultnet", backbone="resnet18")
    save_weights(other, tmp_path / "other.safetensors", {"name": "other", "training": {"dataset": "none"}})
    with pytest.raises(SystemExit) as exc:
        script.main(_args(photos, tmp_path / "c", "--steps", "1", "--init", str(tmp_path / "other.safetensors")))
    assert exc.value.code == 2 and "--init" in capsys.readouterr().err
    (tmp_path / "damaged.safetensors").write_bytes(b"\0" * 64)  # no card, not a model: one line, no traceback
    with pytest.raises(SystemExit) as exc:
        script.main(_args(photos, tmp_path / "d", "--steps", "1", "--init", str(tmp_path / "damaged.safetensors")))
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--init" in err and "card not found" in err and "Traceback" not in err


def test_keep_whole_holds_the_whole_frame_to_the_starting_network(script: Any, photos: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """``--keep-whole``: the drift term is 0 at the first step (the network is its own teacher),
    then grows as the weights move; it needs ``--init``."""
    import json

    assert script.main(_args(photos, tmp_path / "a", "--steps", "1")) == 0
    init = str(tmp_path / "a" / "model.safetensors")
    assert script.main(_args(photos, tmp_path / "b", "--steps", "3", "--lr", "1e-2", "--init", init, "--keep-whole", "--crop-norm")) == 0
    rows = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["drift"] == 0 and rows[-1]["drift"] > 0
    with pytest.raises(SystemExit) as exc:
        script.main(_args(photos, tmp_path / "c", "--steps", "1", "--keep-whole"))
    assert exc.value.code == 2 and "--keep-whole needs --init" in capsys.readouterr().err
