"""Personal models that see the faults and start like the default (issue #25; the `learn` part of
issue #26): the head reads the base model's embedding, generic score and fault probabilities; a
model learned without --fine-tune is a head-only file naming its base by sha256, scored under ONNX
Runtime with the head in NumPy (no torch: `learn` and `score --model NAME` both run where torch
cannot be imported) or under PyTorch by a PersonalNet computing the same head; a missing or
changed base is one line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFilter

from helpers import make_tiny_weights, outputs, run_torch_free

pytestmark = pytest.mark.usefixtures("shipped_models_only")


def _head(rng: np.random.Generator, d: int, n_faults: int) -> Any:
    from aescore.models.personal_head import PersonalHead

    f = (rng.normal(size=n_faults), rng.normal(size=n_faults) * 3, rng.random(n_faults) + 0.5) if n_faults else (np.zeros(0),) * 3
    return PersonalHead(rng.normal(size=d) * 0.1, rng.random(d) + 0.5, rng.normal(size=d) * 0.5, 0.7, -0.3, 1.3, *f)


@pytest.mark.parametrize("with_faults", [True, False])
def test_personal_net_computes_the_numpy_head(tiny_faultnet: Path, tiny_weights: Path, with_faults: bool) -> None:
    """PersonalNet's torch head = PersonalHead.score_outputs of the base's outputs as the
    inference core hands them out (P(high) and fault probabilities in float32), within 1e-5."""
    import torch

    from aescore.models.personal import PersonalNet
    from aescore.weights import load_weights

    base, card = load_weights(tiny_faultnet if with_faults else tiny_weights)
    d = int(base.num_features)
    head = _head(np.random.default_rng(1), d, 10 if with_faults else 0)
    net = PersonalNet(card["architecture"], card["arch_args"], d, base=base, n_faults=head.n_faults).eval()
    net.load_head(head)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 64, 80, generator=g)
    crops = torch.randn(4, 2, 3, 48, 48, generator=g) if with_faults else None
    want = ("embedding", "faults") if with_faults else ("embedding",)
    with torch.no_grad():
        got = outputs(net, x, *want, crops=crops)
        ref = outputs(base, x, *want, crops=crops)
    p_high = torch.softmax(ref.logits.float(), dim=1)[:, 1].numpy()
    faults = torch.sigmoid(ref.faults).numpy() if with_faults else None
    expected = head.score_outputs(ref.embedding.numpy(), p_high, faults)
    assert np.ptp(expected) > 0.05  # the head tells the inputs apart
    assert np.allclose(got.logits[:, 1].numpy(), expected, atol=1e-5, rtol=0), (got.logits[:, 1], expected)
    assert torch.equal(got.logits[:, 0], torch.zeros(4))
    assert torch.allclose(got.embedding, ref.embedding)
    if with_faults:
        assert torch.allclose(got.faults, ref.faults)


def test_head_file_round_trip_and_refusals(tmp_path: Path, tiny_faultnet: Path) -> None:
    """A head-only model: a few kB of float32 tensors written with NumPy, its card naming the base
    by name, sha256 and path; read back exactly, verified by sha256, refused by load_weights in
    one line (its network is built when it is opened)."""
    from safetensors.numpy import load_file

    from aescore.errors import WeightsError
    from aescore.weights import load_head, load_weights, read_card, save_head

    base_card = read_card(tiny_faultnet)
    head = _head(np.random.default_rng(2), 512, 10)
    path = tmp_path / "mine.safetensors"
    card = save_head(head, path, {"name": "mine", "training": {"dataset": "none"}}, base_card=base_card, base_name="tinyfault",
                     base_path=tiny_faultnet)
    assert path.stat().st_size < 10_000 and sorted(load_file(path)) == ["fault_mean", "fault_scale", "fault_weight", "generic", "mean", "scale", "weight"]
    assert card == read_card(path)
    assert card["head_only"] == {"base_model": "tinyfault", "base_sha256": base_card["sha256"], "base_path": str(tiny_faultnet)}
    assert card["architecture"] == "personal_ranker" and card["arch_args"]["n_faults"] == 10
    assert card["preprocess"] == base_card["preprocess"] and card["capabilities"]["faults"]
    back = load_head(path)
    for name, value in head.tensors().items():
        assert np.array_equal(back.tensors()[name], value)
    with pytest.raises(WeightsError, match="head-only personal model"):
        load_weights(path)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        load_head(path)


def _rated_folder(root: Path, n_shoots: int = 4, per_shoot: int = 8) -> Path:
    """Generated photos in shoot folders and a ratings CSV: warm photos liked, cool ones less,
    blurred ones rejected (the bundled default model sees the blur)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:128]
    rows = []
    for s in range(n_shoots):
        (root / f"shoot{s}").mkdir(parents=True)
        for k in range(per_shoot):
            warm, blur = bool(rng.random() < 0.5), bool(rng.random() < 0.3)
            colour = np.array([210, 90, 40]) if warm else np.array([40, 100, 210])
            stripes = np.sin((xx + yy * rng.uniform(-1, 1)) / rng.uniform(2, 6))[..., None] * 50
            img = Image.fromarray(np.clip(colour + stripes + rng.normal(0, 20, (96, 128, 3)), 0, 255).astype("uint8"))
            if blur:
                img = img.filter(ImageFilter.GaussianBlur(3))
            path = root / f"shoot{s}" / f"IMG_{k}.jpg"
            img.save(path, quality=92)
            rows.append(f"{path},{-1 if blur else (4 if warm else 2) + int(rng.integers(0, 2))}")
    (root / "ratings.csv").write_text("path,rating\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return root


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("AESCORE_WEIGHTS_DIR", "AESCORE_DEBUG")}


def _scores(stdout: str) -> dict[str, float]:
    return {row["path"]: row["score"] for row in json.loads(stdout)}


def test_learn_and_score_without_torch_then_torch_agrees(tmp_path: Path) -> None:
    """`learn` on the bundled default model and `score --model NAME` where torch cannot be
    imported; the saved model is a head-only file; `score --runtime torch` (PersonalNet on the
    base network) gives the same scores within 1e-5."""
    from test_learn import cli

    lib = _rated_folder(tmp_path / "lib")
    blocker = tmp_path / "no-torch"
    learned = run_torch_free(["learn", str(lib), "--ratings", str(lib / "ratings.csv"), "--name", "mine", "--min-ratings", "20",
                              "--json"], blocker, env=_env())
    assert learned.returncode == 0, learned.stderr
    assert "Traceback" not in learned.stderr
    out = json.loads(learned.stdout)
    assert out["photos"] == 32 and out["base_model"] == "aescore-technical-lite0-exposure"
    assert out["features"] and set(out["features"]) <= {"embedding", "generic score", "fault probabilities"}
    weights = Path(out["path"])
    card = json.loads(weights.with_suffix(".json").read_text())
    assert weights.stat().st_size < 50_000  # the head alone, not the base network's 27 MB
    assert card["head_only"]["base_model"] == "aescore-technical-lite0-exposure"
    assert card["training"]["head"]["features"] == [
        {"embedding": "embedding", "generic score": "generic_score", "fault probabilities": "faults"}[f] for f in out["features"]]

    photos = sorted(str(p) for p in lib.rglob("*.jpg"))[:6]
    light = run_torch_free(["score", *photos, "--model", "mine", "--no-cache", "--json"], blocker, env=_env())
    assert light.returncode == 0, light.stderr
    onnx = _scores(light.stdout)
    r = cli("score", *photos, "--model", "mine", "--no-cache", "--json", "--runtime", "torch", "--device", "cpu", "--workers", "0")
    assert r.code == 0, r.err
    torch_scores = _scores(r.out)
    assert set(onnx) == set(torch_scores) == set(photos)
    worst = max(abs(onnx[p] - torch_scores[p]) for p in photos)
    print(f"head-only personal model: max |onnx - torch| = {worst:.1e} over {len(photos)} photos")
    assert worst <= 1e-5, worst  # the JSON rounds to 6 decimals: within one unit of the last
    assert len(set(onnx.values())) > 1


def test_a_head_with_faults_scores_as_learn_computed_it_under_both_runtimes(tmp_path: Path) -> None:
    """A head that reads the faults, fitted on what `learn` reads (the base's outputs from the
    score cache) and saved head-only: `score --model` gives each photo the head's P(high) of those
    numbers, under ONNX Runtime and under PyTorch, within 1e-5."""
    from test_learn import cli

    from aescore.learn.features import embed_photos
    from aescore.learn.ranker import fit_ranker
    from aescore.models.personal_head import log_odds, sigmoid
    from aescore.weights import read_card, resolve_model, save_head, user_models_dir

    lib = _rated_folder(tmp_path / "lib", n_shoots=2, per_shoot=8)
    ratings = {p: int(r) for p, r in (line.split(",") for line in (lib / "ratings.csv").read_text().splitlines()[1:])}
    emb = embed_photos(sorted(ratings), None, device="cpu")
    assert emb.faults is not None and emb.faults.shape == (16, 10)
    r = np.array([ratings[p] for p in emb.paths])
    head = fit_ranker(emb.embeddings, log_odds(emb.generic), r, 10.0, f=log_odds(emb.faults), l2_faults=0.1)
    assert head.n_faults == 10 and np.abs(head.fault_weight).max() > 0
    base = resolve_model(None)
    save_head(head, user_models_dir() / "faulty.safetensors", {"name": "faulty", "training": {"dataset": "none"}},
              base_card=read_card(base), base_name=read_card(base)["name"])
    expected = dict(zip(emb.paths, sigmoid(head.score_outputs(emb.embeddings, emb.generic, emb.faults))))
    for runtime in ("onnx", "torch"):
        got = cli("score", *emb.paths, "--model", "faulty", "--no-cache", "--json", "--runtime", runtime, "--device", "cpu", "--workers", "0")
        assert got.code == 0, got.err
        scores = _scores(got.out)
        worst = max(abs(scores[p] - expected[p]) for p in emb.paths)
        print(f"{runtime}: max |score - learn| = {worst:.1e}")
        assert worst <= 1.5e-6 if runtime == "onnx" else worst <= 1e-5, (runtime, worst)


def test_a_missing_or_changed_base_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the base model a head was learned on is gone, or a model of its name holds other
    weights, scoring with the head says so in one line (exit 1) — never a traceback, never the
    head applied to another network's outputs."""
    from test_learn import cli

    from aescore.weights import read_card, save_head, user_models_dir

    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    base = make_tiny_weights(weights_dir)
    monkeypatch.setenv("AESCORE_WEIGHTS_DIR", str(weights_dir))
    head = _head(np.random.default_rng(3), 512, 0)
    card = save_head(head, user_models_dir() / "mine.safetensors", {"name": "mine"}, base_card=read_card(base), base_name="tiny")
    photo = tmp_path / "one.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(photo)
    ok = cli("score", photo, "--model", "mine", "--no-cache", "--json", "--device", "cpu", "--workers", "0")
    assert ok.code == 0, ok.err

    # The base replaced by other weights under its name (as an updated default would be).
    base.with_suffix(".json").rename(tmp_path / "tiny.json")
    base.rename(tmp_path / "tiny.safetensors")
    make_tiny_weights(weights_dir)  # same architecture, same name ...
    other = read_card(weights_dir / "tiny.json")
    other["sha256"] = "0" * 64  # ... other weights (a card of a file the test does not need to load)
    (weights_dir / "tiny.json").write_text(json.dumps(other))
    changed = cli("score", photo, "--model", "mine", "--device", "cpu")
    assert changed.code == 1 and "has other weights" in changed.err and "--replace" in changed.err, changed.err
    assert len(changed.err.strip().splitlines()) == 1

    # No base at all.
    for p in weights_dir.iterdir():
        p.unlink()
    missing = cli("score", photo, "--model", "mine", "--device", "cpu")
    assert missing.code == 1 and "which is not installed" in missing.err and card["head_only"]["base_sha256"][:12] in missing.err, missing.err

    # A moved copy of the very weights serves (found by sha256).
    (tmp_path / "tiny.safetensors").rename(weights_dir / "renamed.safetensors")
    (tmp_path / "tiny.json").rename(weights_dir / "renamed.json")
    assert cli("score", photo, "--model", "mine", "--no-cache", "--json", "--device", "cpu", "--workers", "0").code == 0
