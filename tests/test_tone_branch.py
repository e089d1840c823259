"""The exposure branch (issue 28): the histogram features, the branch's place in the network (timm
and plain twin alike, ONNX too), the focused fault pairs and the branch's training script."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from aescore.data.fault_kinds import FAULT_KINDS
from aescore.data.fault_pairs import FaultPairs
from aescore.data.transforms import Preprocess
from aescore.models import create_model
from aescore.models.heads import LUMA_LEVELS, TONE_FEATURES, TONE_KINDS, tone_stats
from aescore.models.plain import PlainFaultNet, build_plain_model, plain_supported
from aescore.weights import load_weights, save_weights
from tests.helpers import load_script, outputs, pattern, randomise_batchnorm

REPO = Path(__file__).resolve().parents[1]
_VIEWS = ("embedding", "faults", "region_map")


def _normalised(rgb: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] -> [1, 3, H, W] scaled to [-1, 1] (mean = std = 0.5)."""
    return (torch.from_numpy(rgb).permute(2, 0, 1).float()[None] / 255 - 0.5) / 0.5


def test_tone_stats_read_the_histogram() -> None:
    """A frame a quarter black, a quarter white, half pure red: the cumulative luminance shares
    (clipped shadows, the midtones, clipped highlights) are those of its pixels."""
    img = np.zeros((8, 8, 3), np.uint8)
    img[:2] = 255  # white
    img[4:, :, 0] = 255  # red: luminance 0.2126
    t = tone_stats(_normalised(img), (0.5,) * 3, (0.5,) * 3)[0]
    assert t.shape == (TONE_FEATURES,) == (len(LUMA_LEVELS),)
    expected = [0.25 + 0.5 * (lvl > 0.2126) for lvl in LUMA_LEVELS]  # black always below, white never
    torch.testing.assert_close(t, torch.tensor(expected))


def test_tone_stats_see_an_exposure_change() -> None:
    """Darkening moves the luminance histogram down: every cumulative share rises or stays."""
    img = pattern(64, 48, 0)
    dark = (img.astype(np.float32) * 0.35).astype(np.uint8)
    a = tone_stats(_normalised(img), (0.5,) * 3, (0.5,) * 3)[0, : len(LUMA_LEVELS)]
    b = tone_stats(_normalised(dark), (0.5,) * 3, (0.5,) * 3)[0, : len(LUMA_LEVELS)]
    assert bool((b >= a).all()) and float((b - a).sum()) > 1


def _with_branch(backbone: str = "resnet10t", content_from: int = 0, seed: int = 0) -> tuple[Any, Any]:
    """A random faultnet and the same network with a random (non-zero) exposure branch."""
    torch.manual_seed(seed)
    extra = {"content_from": content_from} if content_from else {}
    base = create_model("faultnet", backbone=backbone, **extra).eval()
    randomise_batchnorm(base, seed)
    toned = create_model("faultnet", backbone=backbone, tone_branch=16, **extra).eval()
    missing, unexpected = toned.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("tone.") for k in missing)
    return base, toned


def test_a_fresh_branch_changes_nothing_and_a_trained_one_only_the_exposure_reasons() -> None:
    base, toned = _with_branch()
    g = torch.Generator().manual_seed(1)
    whole, crops = torch.randn(2, 3, 64, 80, generator=g), torch.randn(2, 2, 3, 48, 48, generator=g)
    with torch.no_grad():
        ref = outputs(base, whole, *_VIEWS, crops=crops)
        fresh = outputs(toned, whole, *_VIEWS, crops=crops)
        for key in ("logits", *_VIEWS):
            assert torch.equal(getattr(fresh, key), getattr(ref, key)), key
        for p in toned.tone.parameters():
            p.normal_(0, 0.5, generator=g)
        got = outputs(toned, whole, *_VIEWS, crops=crops)
        df = toned.tone(whole, ref.logits[:, 1] - ref.logits[:, 0], ref.faults)  # the branch reads the pooled outputs
    torch.testing.assert_close(got.faults, ref.faults + df)
    moved = {FAULT_KINDS[k] for k in range(len(FAULT_KINDS)) if float(df[:, k].abs().max()) > 0}
    assert moved == set(TONE_KINDS)
    for key in ("logits", "region_map", "embedding"):  # the score and the rest stay the network's
        assert torch.equal(getattr(got, key), getattr(ref, key)), key


def test_plain_twin_and_card_carry_the_branch(tmp_path: Path) -> None:
    """Saved and loaded: the card names the branch, the plain-torch twin scores as the timm network."""
    _, toned = _with_branch("tf_efficientnet_lite0", content_from=3, seed=2)
    with torch.no_grad():
        for p in toned.tone.parameters():
            p.normal_(0, 0.3)
    save_weights(toned, tmp_path / "t.safetensors", {"name": "t", "training": {"dataset": "none"}})
    plain, card = load_weights(tmp_path / "t.safetensors")
    assert card["arch_args"]["tone_branch"] == 16 and isinstance(plain, PlainFaultNet) and plain.tone is not None
    assert plain_supported("faultnet", card["arch_args"]) and not plain_supported("faultnet", {"tone_branch": -1})
    g = torch.Generator().manual_seed(3)
    whole, crops = torch.randn(2, 3, 75, 101, generator=g), torch.randn(2, 2, 3, 40, 40, generator=g)
    with torch.no_grad():
        want, got = outputs(toned, whole, *_VIEWS, crops=crops), outputs(plain, whole, *_VIEWS, crops=crops)
        plain.fold_batchnorm_()
        folded = outputs(plain, whole, *_VIEWS, crops=crops)
    for key in ("logits", *_VIEWS):
        torch.testing.assert_close(getattr(got, key), getattr(want, key), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(getattr(folded, key), getattr(want, key), atol=1e-4, rtol=1e-4)
    rebuilt = build_plain_model("faultnet", card["arch_args"], toned.state_dict())
    assert list(rebuilt.state_dict()) == list(toned.state_dict())


def _photos(folder: Path, n: int = 4) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(pattern(300, 240, i)).save(folder / f"p{i}.jpg", quality=95)
    return sorted(str(p) for p in folder.iterdir())


RECIPE = {"mean": [0.5] * 3, "std": [0.5] * 3,
          "eval": {"mode": "shorter", "size": 96, "max_aspect": 1.5, "detail": {"crops": 2, "size": 64}}}


def test_focused_pairs_draw_their_faults_from_the_focus(tmp_path: Path) -> None:
    focus = ("underexposure", "overexposure", "colour_cast")
    data = FaultPairs(_photos(tmp_path), Preprocess.from_card(RECIPE), length=24, seed=1, focus=focus, focus_share=1.0)
    kinds = {FAULT_KINDS[k] for i in range(24) for k in np.flatnonzero(data[i][4].numpy())}
    assert kinds and kinds <= set(focus)
    with pytest.raises(ValueError, match="focus"):
        FaultPairs(_photos(tmp_path), Preprocess.from_card(RECIPE), length=4, focus_share=0.5)


@pytest.fixture(scope="module")
def script() -> Any:
    return load_script("train_tone_branch")


def test_branch_fit_learns_what_the_histogram_shows(script: Any) -> None:
    """On features where the network's reasons cannot tell the fault but the histogram can, the
    fitted branch names it; the network alone does not."""
    g = torch.Generator().manual_seed(0)
    n = 256
    tones = torch.rand(n, 2, TONE_FEATURES, generator=g)
    under = torch.arange(n) % 2 == 0  # half the faulty copies underexposed, half overexposed
    tones[under, 1, 0] += 1.0  # more clipped shadows
    tones[~under, 1, -1] -= 1.0  # more clipped highlights
    labels = torch.zeros(n, len(FAULT_KINDS))
    labels[under, FAULT_KINDS.index("underexposure")] = 1
    labels[~under, FAULT_KINDS.index("overexposure")] = 1
    f = {"d": torch.zeros(n, 2), "faults": torch.zeros(n, 2, len(FAULT_KINDS)), "tones": tones, "labels": labels,
         "weight": torch.ones(n)}
    train, dev = {k: v[:192] for k, v in f.items()}, {k: v[192:] for k, v in f.items()}
    from aescore.models.heads import ToneBranch

    branch = ToneBranch(len(FAULT_KINDS), 16, (0.5,) * 3, (0.5,) * 3)
    best, log = script.fit(branch, train, dev, epochs=150, lr=1e-2, weight_decay=0.0, batch=64, seed=0)
    branch.load_state_dict(best)
    assert log[-1]["dev"] < log[0]["dev"]
    base, fitted = script.reason_figures(None, dev), script.reason_figures(branch, dev)
    assert base["top1"] == 0.0 and fitted["top1"] > 0.95


def test_script_writes_a_model_whose_outputs_are_base_plus_branch(script: Any, tiny_faultnet: Path, tmp_path: Path) -> None:
    """End to end at a tiny size: cached features, a fitted branch, the model written with its
    card; the written model scores an image as the base does, its reasons are the base's plus the
    branch's correction."""
    photos = tmp_path / "photos"
    _photos(photos, 6)
    out = tmp_path / "run"
    args = ["--base", str(tiny_faultnet), "--photos", str(photos), "--pairs", "16", "--dev-share", "0.34",
            "--epochs", "3", "--hidden", "8", "--out", str(out)]
    assert script.main(args) == 0
    model, card = load_weights(out / "model.safetensors")
    base, _ = load_weights(tiny_faultnet)
    assert card["arch_args"]["tone_branch"] == 8 and card["training"]["tone_branch"]["base_sha256"] == json.loads(
        tiny_faultnet.with_suffix(".json").read_text())["sha256"]
    assert sorted(p.name for p in (out / "features" / "train").iterdir()) == ["chunk0000.npz"]
    g = torch.Generator().manual_seed(5)
    whole, crops = torch.randn(1, 3, 64, 80, generator=g).clamp(-1, 1), torch.randn(1, 2, 3, 48, 48, generator=g)
    with torch.no_grad():
        got, ref = outputs(model, whole, "faults", crops=crops), outputs(base, whole, "faults", crops=crops)
        df = model.tone(whole, ref.logits[:, 1] - ref.logits[:, 0], ref.faults)
    assert torch.equal(got.logits, ref.logits)
    torch.testing.assert_close(got.faults, ref.faults + df)
    # run again: the features are kept, only the branch is fitted anew
    before = (out / "features" / "train" / "chunk0000.npz").stat().st_mtime_ns
    assert script.main(args) == 0
    assert (out / "features" / "train" / "chunk0000.npz").stat().st_mtime_ns == before


def test_onnx_program_computes_the_branch(tmp_path: Path) -> None:
    """The exported program holds the histogram and the branch: ONNX Runtime gives the PyTorch
    outputs (checked by the export at two shapes): the base's logits, corrected reasons."""
    pytest.importorskip("onnx")
    import onnxruntime as ort

    from aescore.inference.onnx_export import export_onnx

    base, toned = _with_branch(seed=4)
    with torch.no_grad():
        for p in toned.tone.parameters():
            p.normal_(0, 0.5)
    recipe = {"mean": [0.5] * 3, "std": [0.5] * 3,
              "eval": {"mode": "shorter", "size": 64, "max_aspect": 1.5, "detail": {"crops": 2, "size": 48, "decode_shorter": 200}}}
    save_weights(toned, tmp_path / "toned.safetensors", {"name": "toned", "preprocess": recipe, "training": {"dataset": "none"}})
    block = export_onnx(tmp_path / "toned.safetensors", check_shapes=((64, 90), (96, 64)))
    session = ort.InferenceSession(str(tmp_path / block["file"]), providers=["CPUExecutionProvider"])
    whole = _normalised(pattern(90, 64, 2))
    crops = torch.randn(1, 2, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    logits, faults = session.run(["logits", "faults"], {"whole": whole.numpy(), "crops": crops.numpy()})
    with torch.no_grad():
        ref = outputs(base, whole, "faults", crops=crops)
    np.testing.assert_allclose(logits, ref.logits.numpy(), atol=1e-4)
    assert float(np.abs(faults - ref.faults.numpy()).max()) > 1e-3


def test_natural_weights_bring_the_mix_back_to_the_recipe(script: Any) -> None:
    """60 % of the pairs drawn from the focus on top of a recipe that gives it 20 %: 68 % of the
    cached pairs are focus-only; weighted, they count for the recipe's 20 % again."""
    focus = ("underexposure", "overexposure", "colour_cast")
    labels = torch.zeros(100, len(FAULT_KINDS))
    labels[:68, FAULT_KINDS.index("underexposure")] = 1  # focus only
    labels[68:, FAULT_KINDS.index("noise")] = 1
    labels[68:70, FAULT_KINDS.index("colour_cast")] = 1  # a focus family with another: not focus-only
    w = script.natural_weights(labels, focus, 0.6)
    assert float(w[:68].sum() / w.sum()) == pytest.approx(0.2)
    assert torch.equal(script.natural_weights(labels, focus, 0.0), torch.ones(100))


def test_shipped_default_scores_as_lite0_and_corrects_only_the_exposure_reasons(shipped_models_only: None) -> None:
    """The bundled default is aescore-technical-lite0 with the exposure branch: through the ONNX
    programs both ship, the same scores and embeddings on real photos, reasons differing only in
    the branch's three kinds."""
    from aescore.inference.core import Job, infer
    from aescore.inference.loading import open_model
    from aescore.weights import default_weights_path

    default = default_weights_path()
    before = default.parent / "aescore-technical-lite0.safetensors"
    assert default != before and json.loads(default.with_suffix(".json").read_text())["arch_args"]["tone_branch"] > 0
    photos = sorted((REPO / "samples").glob("*.jpg"))[:3]
    want = frozenset({"p_high", "faults", "embedding"})
    runs = [list(infer(open_model(str(w), "cpu", "onnx"), [Job(str(p)) for p in photos], want=want, workers=0))
            for w in (before, default)]
    others = [k for k in range(len(FAULT_KINDS)) if FAULT_KINDS[k] not in TONE_KINDS]
    for old, new in zip(*runs):
        assert new.outputs["p_high"] == pytest.approx(old.outputs["p_high"], abs=1e-6)  # two programs, the same weights
        np.testing.assert_allclose(new.outputs["embedding"], old.outputs["embedding"], atol=1e-5)
        np.testing.assert_allclose(np.asarray(new.outputs["faults"])[others], np.asarray(old.outputs["faults"])[others], atol=1e-6)
    assert any(np.abs(np.asarray(n.outputs["faults"]) - np.asarray(o.outputs["faults"])).max() > 1e-3 for o, n in zip(*runs))
