"""Synthetic faults, the degradation-dataset builder, its CLI and the pairwise evaluation."""

from __future__ import annotations

import csv
import hashlib
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from aescore.cli.main import get_app, main
from aescore.data.degrade import ALL_KINDS, FAULTS, build_degraded_dataset, degrade, fault_rng, select_holdout
from aescore.engine.pairwise import Pair, evaluate_pairs, laplacian_sharpness, pairwise_accuracy, read_pairs
from aescore.errors import DataError, UsageError


def _photo(seed: int = 0, size: tuple[int, int] = (240, 180)) -> Image.Image:
    """A synthetic 'photo': smooth colour gradients, random rectangles and fine texture."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / w, yy / h, 0.5 + 0.3 * np.sin(xx / 17.0 + seed)], axis=-1) * 150 + 40
    for _ in range(12):
        x0, y0 = rng.integers(0, w - 20), rng.integers(0, h - 20)
        base[y0 : y0 + rng.integers(8, 40), x0 : x0 + rng.integers(8, 40)] = rng.uniform(30, 220, 3)
    base += rng.normal(0, 6, base.shape)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")


def _f(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float64)


def _lum(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("L"), dtype=np.float64)


def _apply(kind: str, sev: int, img: Image.Image | None = None, seed: int = 0) -> tuple[Image.Image, Image.Image]:
    img = img or _photo()
    return img, degrade(img, kind, sev, fault_rng(seed, "photo", kind, sev))


# ----------------------------------------------------------------------------- faults


@pytest.mark.parametrize("sev", [1, 2, 3])
def test_fault_directions(sev: int) -> None:
    img = _photo()
    lap0 = laplacian_sharpness(img)
    for kind in ("defocus", "motion"):
        assert laplacian_sharpness(_apply(kind, sev, img)[1]) < 0.5 * lap0, kind
    assert laplacian_sharpness(_apply("noise", sev, img)[1]) > 1.5 * lap0
    assert _lum(_apply("underexposure", sev, img)[1]).mean() < 0.7 * _lum(img).mean()
    over = _apply("overexposure", sev, img)[1]
    clipped = (_f(over).max(axis=2) >= 254).mean()  # pixels with a blown channel
    assert _lum(over).mean() > _lum(img).mean() + 20 and clipped > 0.1 > (_f(img).max(axis=2) >= 254).mean()
    assert _lum(_apply("haze", sev, img)[1]).std() < 0.65 * _lum(img).std()
    assert np.abs(_f(_apply("jpeg", sev, img)[1]) - _f(img)).mean() > 2.0
    cast = _f(_apply("colour_cast", sev, img)[1]).reshape(-1, 3).mean(0)
    orig = _f(img).reshape(-1, 3).mean(0)
    assert np.abs(cast / cast.mean() - orig / orig.mean()).max() > 0.08
    for kind in ("tilt", "crop"):
        out = _apply(kind, sev, img)[1]
        assert out.size == img.size and np.abs(_f(out) - _f(img)).mean() > 5.0, kind


def test_severity_orders_strength() -> None:
    img = _photo(3)
    under = [_lum(_apply("underexposure", s, img)[1]).mean() for s in (1, 2, 3)]
    blur = [laplacian_sharpness(_apply("defocus", s, img)[1]) for s in (1, 2, 3)]
    contrast = [_lum(_apply("haze", s, img)[1]).std() for s in (1, 2, 3)]
    assert under[0] > under[1] > under[2]
    assert blur[0] > blur[1] > blur[2]
    assert contrast[0] > contrast[1] > contrast[2]


def test_tilt_has_no_black_corners() -> None:
    bright = Image.fromarray(np.clip(_f(_photo(1)) * 0.3 + 170, 0, 255).astype(np.uint8))
    for sev in (1, 2, 3):
        for seed in range(3):
            out = degrade(bright, "tilt", sev, np.random.default_rng(seed))
            arr = np.asarray(out)
            assert out.size == bright.size
            assert arr.min() > 120, "a rotated-in border survived the crop"


def test_every_fault_keeps_size_and_mode_on_odd_input() -> None:
    grey = _photo(2, (101, 77)).convert("L")
    for kind in ALL_KINDS:
        out = degrade(grey, kind, 2, np.random.default_rng(0))
        assert out.mode == "RGB" and out.size == (101, 77), kind


def test_faults_are_deterministic_under_a_seed() -> None:
    img = _photo()
    for kind in ALL_KINDS:
        a = degrade(img, kind, 2, fault_rng(7, "x.jpg", kind, 2))
        b = degrade(img, kind, 2, fault_rng(7, "x.jpg", kind, 2))
        assert a.tobytes() == b.tobytes(), kind
    differ = [kind for kind in ALL_KINDS if degrade(img, kind, 2, fault_rng(1, "x", kind, 2)).tobytes()
              != degrade(img, kind, 2, fault_rng(2, "x", kind, 2)).tobytes()]
    assert len(differ) >= len(ALL_KINDS) - 1  # random strengths/angles: seeds matter


def test_bad_kind_and_severity() -> None:
    with pytest.raises(UsageError):
        degrade(_photo(), "sepia", 1, np.random.default_rng(0))
    with pytest.raises(UsageError):
        degrade(_photo(), "noise", 4, np.random.default_rng(0))
    assert set(FAULTS) == set(ALL_KINDS) and len(ALL_KINDS) == 10


# ----------------------------------------------------------------------------- dataset builder


def _make_sources(folder: Path, n: int = 6) -> dict[str, str]:
    """n small photos (JPEG and PNG, one with a name needing care) -> {name: sha256}."""
    folder.mkdir(parents=True)
    for i in range(n):
        ext = ".png" if i % 3 == 0 else ".jpg"
        _photo(i, (120, 90)).save(folder / f"p{i} x{ext}")
    (folder / "notes.txt").write_text("not an image")
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_build_degraded_dataset(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    before = _make_sources(src)
    progress: list[tuple[int, int]] = []
    summary = build_degraded_dataset(src, out, holdout=0.34, copies_per_image=2, seed=3, on_progress=lambda d, t: progress.append((d, t)))
    # Sources untouched, byte for byte; nothing added to the source folder.
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in src.iterdir()} == before
    assert progress[-1] == (6, 6)

    manifest = json.loads((out / "manifest.json").read_text())
    held = manifest["held_out"]
    assert len(held) == 2 and set(held) <= set(manifest["sources"]) and len(manifest["sources"]) == 6
    assert held == select_holdout(manifest["sources"], 0.34, 3)
    held_stems = {Path(h).stem.replace(" ", "_") for h in held}

    train, test, pairs = _rows(out / "train.csv"), _rows(out / "test.csv"), _rows(out / "pairs.csv")
    assert list(train[0]) == ["path", "label", "group"] and list(test[0]) == ["path", "label"]
    assert not {r["group"] for r in train} & held_stems
    assert all(not r["path"].split("/")[-1].startswith(tuple(held_stems)) for r in train)
    assert sum(r["label"] == "1" for r in train) == 4 and sum(r["label"] == "0" for r in train) == 8
    for r in train:  # every copy carries its source's stem as group
        assert Path(r["path"]).stem.split("__")[0] == r["group"]
    assert len(pairs) == 2 * len(ALL_KINDS) * 3
    assert {Path(r["original"]).stem for r in pairs} == held_stems
    assert {(r["kind"], r["severity"]) for r in pairs} == {(k, str(s)) for k in ALL_KINDS for s in (1, 2, 3)}
    for r in train + test:
        assert (out / r["path"]).is_file()
    for r in pairs:
        assert (out / r["original"]).is_file() and (out / r["degraded"]).is_file()
    assert summary["pairs"] == len(pairs) and summary["train_rows"] == len(train) and summary["skipped"] == []

    # Reproducible: a second build writes the same CSVs and the same image bytes.
    build_degraded_dataset(src, tmp_path / "again", holdout=0.34, copies_per_image=2, seed=3)
    for name in ("train.csv", "test.csv", "pairs.csv"):
        assert (out / name).read_bytes() == (tmp_path / "again" / name).read_bytes()
    some = train[-1]["path"]
    assert (out / some).read_bytes() == (tmp_path / "again" / some).read_bytes()


def test_build_all_copies_kinds_and_skips(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _make_sources(src, 4)
    (src / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    summary = build_degraded_dataset(src, tmp_path / "o", holdout=0.0, kinds=["jpeg", "tilt"], severities=[3], copies_per_image="all")
    assert summary["held_out_sources"] == 0 and summary["pairs"] == 0
    assert [s["file"] for s in summary["skipped"]] == ["broken.jpg"]
    train = _rows(tmp_path / "o" / "train.csv")
    assert sorted(Path(r["path"]).stem.split("__")[-1] for r in train if r["label"] == "0") == ["jpeg3"] * 4 + ["tilt3"] * 4


def test_build_errors(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _make_sources(src, 3)
    with pytest.raises(DataError, match="not found"):
        build_degraded_dataset(tmp_path / "missing", tmp_path / "o")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        build_degraded_dataset(tmp_path / "empty", tmp_path / "o")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(UsageError, match="not empty"):
        build_degraded_dataset(src, tmp_path / "full")
    with pytest.raises(UsageError, match="differ"):
        build_degraded_dataset(src, src)
    with pytest.raises(UsageError, match="kind"):
        build_degraded_dataset(src, tmp_path / "o2", kinds=["sepia"])
    build_degraded_dataset(src, tmp_path / "full", force=True, copies_per_image=1)
    assert (tmp_path / "full" / "keep.txt").read_text() == "x"  # --force overwrites ours, deletes nothing


# ----------------------------------------------------------------------------- CLI


def test_cli_degrade(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _make_sources(src, 5)
    runner = CliRunner()
    args = ["data", "degrade", str(src), str(tmp_path / "out"), "--kinds", "defocus,jpeg", "--severities", "1,3",
            "--copies", "1", "--holdout", "0.2", "--json"]
    result = runner.invoke(get_app(), args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["pairs"] == 4 and summary["train_rows"] == 8
    result = runner.invoke(get_app(), args)
    assert isinstance(result.exception, UsageError)
    result = runner.invoke(get_app(), ["data", "degrade", str(src), str(tmp_path / "o"), "--kinds", "blur"])
    assert isinstance(result.exception, UsageError)


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["data", "degrade", str(tmp_path / "nope"), str(tmp_path / "out")])
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("aescore: error: source folder not found") and "\n" not in err


def test_cli_pairwise_with_a_stub_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pairwise command end to end; the model is a stub whose score is mean sharpness (offline, tiny)."""
    import torch

    from aescore.models.base import ScoringModule
    from aescore.models.contract import Capabilities, ModelInputs, ModelOutputs

    src = tmp_path / "src"
    _make_sources(src, 4)
    build_degraded_dataset(src, tmp_path / "out", holdout=0.25, kinds=["defocus", "noise"], severities=[2], copies_per_image=1)

    class Sharpness(ScoringModule):
        capabilities = Capabilities()  # logits only

        def _outputs(self, inputs: ModelInputs, want: frozenset[str]) -> ModelOutputs:
            x = inputs.whole
            s = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().mean(dim=(1, 2, 3))
            return ModelOutputs(torch.stack([torch.zeros_like(s), s * 10], dim=1))

    card = {"name": "stub", "preprocess": {"mean": [0.5] * 3, "std": [0.25] * 3, "eval": {"mode": "shorter", "size": 64, "max_aspect": 1.5}}}
    stub = types.ModuleType("aescore.weights")
    stub.resolve_model = lambda spec: Path(str(spec))  # type: ignore[attr-defined]
    stub.read_card = lambda path: card  # type: ignore[attr-defined]
    stub.head_only_base = lambda card: None  # type: ignore[attr-defined]  # a whole network, not a personal head
    stub.resolve_base = lambda card: None  # type: ignore[attr-defined]
    stub.load_weights = lambda path, device="cpu", **_: (Sharpness().eval(), card)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "aescore.weights", stub)
    import aescore

    monkeypatch.setattr(aescore, "weights", stub, raising=False)
    result = CliRunner().invoke(get_app(), ["data", "pairwise", str(tmp_path / "out"), "--model", "stub", "--json", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    res = json.loads(result.stdout)
    assert res["model"]["n"] == res["laplacian"]["n"] == 2
    assert res["model"]["per_kind"]["defocus"]["accuracy"] == 1.0  # blur lowers the stub's sharpness
    assert res["laplacian"]["per_kind"]["defocus"]["accuracy"] == 1.0
    assert res["laplacian"]["per_kind"]["noise"]["accuracy"] == 0.0  # the baseline's blind spot
    table = CliRunner().invoke(get_app(), ["data", "pairwise", str(tmp_path / "out"), "--model", "stub"])
    assert table.exit_code == 0 and "laplacian" in table.stdout and "defocus" in table.stdout


# ----------------------------------------------------------------------------- pairwise metric


def test_pairwise_accuracy_arithmetic_with_ties() -> None:
    pairs = [
        Pair("a", "a_blur", "defocus", 1),  # win
        Pair("a", "a_noise", "noise", 2),  # tie -> 1/2
        Pair("b", "b_blur", "defocus", 2),  # loss
        Pair("b", "b_noise", "noise", 2),  # win
    ]
    scores = {"a": 0.9, "a_blur": 0.1, "a_noise": 0.9, "b": 0.5, "b_blur": 0.7, "b_noise": 0.2}
    calls: list[str] = []
    res = pairwise_accuracy(pairs, lambda p: calls.append(p) or scores[p])
    assert res["n"] == 4 and res["accuracy"] == pytest.approx(2.5 / 4)
    assert res["per_kind"]["defocus"] == {"n": 2, "accuracy": 0.5}
    assert res["per_kind"]["noise"] == {"n": 2, "accuracy": 0.75}
    assert res["per_severity"]["1"] == {"n": 1, "accuracy": 1.0}
    assert res["per_severity"]["2"]["accuracy"] == pytest.approx(1.5 / 3)
    assert sorted(calls) == sorted(scores)  # each path scored once


def test_evaluate_pairs_and_laplacian(tmp_path: Path) -> None:
    (tmp_path / "pairs.csv").write_text("original,degraded,kind,severity\nimages/a.jpg,images/a__jpeg1.jpg,jpeg,1\n")
    assert read_pairs(tmp_path / "pairs.csv")[0].original == str(tmp_path / "images/a.jpg")
    res = evaluate_pairs(tmp_path / "pairs.csv", {"images/a.jpg": 0.2, "images/a__jpeg1.jpg": 0.1})
    assert res["accuracy"] == 1.0
    res = evaluate_pairs(tmp_path / "pairs.csv", {str(tmp_path / "images/a.jpg"): 0.1, str(tmp_path / "images/a__jpeg1.jpg"): 0.2})
    assert res["accuracy"] == 0.0
    with pytest.raises(DataError):
        evaluate_pairs(tmp_path / "pairs.csv", {})
    img = _photo()
    # Resized to a fixed shorter side, so the measure barely depends on the input resolution.
    big = img.resize((480, 360), Image.LANCZOS)
    assert laplacian_sharpness(img) > 0
    assert laplacian_sharpness(img.resize((480, 360), Image.BILINEAR)) == pytest.approx(laplacian_sharpness(big), rel=0.5)


def test_pair_rank_trains_on_a_degraded_dataset(tmp_path: Path) -> None:
    # End to end through `aescore train`: the CSV's groups become PairedDataset items. An odd K makes
    # a mix-up fail loudly: unpaired items would give pair_rank K (odd) patches instead of 2K.
    from typer.testing import CliRunner

    from aescore.cli.main import get_app
    from aescore.weights import read_card

    _make_sources(tmp_path / "src", n=8)
    build_degraded_dataset(tmp_path / "src", tmp_path / "deg", holdout=0.0, copies_per_image=2, seed=0)
    out = tmp_path / "run"
    args = ["train", "--dataset", "csv", "--root", tmp_path / "deg" / "train.csv", "--preset", "mpa-ada",
            "--objective", "pair_rank", "--output", out, "--epochs", 1, "--batch-size", 2, "--patches", 3,
            "--max-steps", 2, "--val-size", 6, "--backbone", "resnet10t", "--no-pretrained", "--crop-size", 32,
            "--resize-size", 40, "--workers", 0, "--device", "cpu"]
    res = CliRunner().invoke(get_app(), [str(a) for a in args])
    assert res.exit_code == 0, res.output
    card = read_card(out / "best.json")
    assert card["training"]["objective"] == "pair_rank"
    assert card["preprocess"]["train"]["crop"] == 32


def test_pair_rank_training_with_undecodable_photos(tmp_path: Path) -> None:
    # Decode failures in pairs come back as failure records, which the engine counts and skips like
    # any unreadable image. With one original truncated the run finishes and reports the skips;
    # with every original truncated nothing can be learned, and the run stops with a one-line
    # error instead of exporting an untrained model as "best".
    _make_sources(tmp_path / "src", n=8)
    build_degraded_dataset(tmp_path / "src", tmp_path / "deg", holdout=0.0, copies_per_image=2, seed=0)
    with open(tmp_path / "deg" / "train.csv", newline="", encoding="utf-8") as fh:
        originals = [tmp_path / "deg" / r["path"] for r in csv.DictReader(fh) if r["label"] == "1"]

    def train(out: Path) -> object:
        args = ["train", "--dataset", "csv", "--root", tmp_path / "deg" / "train.csv", "--preset", "mpa-ada",
                "--objective", "pair_rank", "--output", out, "--epochs", 1, "--batch-size", 2, "--patches", 2,
                "--val-size", 3, "--backbone", "resnet10t", "--no-pretrained", "--crop-size", 32,
                "--resize-size", 40, "--workers", 0, "--device", "cpu", "--json"]
        return CliRunner().invoke(get_app(), [str(a) for a in args])

    def truncate(path: Path) -> None:
        path.write_bytes(path.read_bytes()[:200])

    truncate(originals[0])
    res = train(tmp_path / "one")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["n_skipped"] >= 1
    assert (tmp_path / "one" / "best.safetensors").is_file()

    for path in originals[1:]:
        truncate(path)
    res = train(tmp_path / "all")
    assert isinstance(res.exception, DataError), res.output
    assert "no training image could be decoded" in str(res.exception)
    assert not (tmp_path / "all" / "best.safetensors").exists()
