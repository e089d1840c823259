"""AADB and CSV loading, group-preserving splits, and the training / evaluation transforms."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from aescore.data import load_splits
from aescore.data.aadb import LISTS
from aescore.data.splits import Sample, SkipLog, capped_splits, seeded_holdout
from helpers import make_tiny_aadb, make_tiny_csv
from aescore.data.train_transforms import (
    build_eval_transform_for_training,
    build_train_transform,
    mpa_train_transform,
    rgnet_eval_transform,
    rgnet_train_transform,
)
from aescore.errors import DataError

MPA_PRE = {"train": {"kind": "mpa", "resize_shorter": 40, "crop": 32}, "eval": {"mode": "shorter", "size": 40}}
RGNET_PRE = {"train": {"kind": "rgnet", "size": 36, "scale": [1.05, 1.25]}, "eval": {"mode": "square", "size": 36}}


# --- AADB ---------------------------------------------------------------------------------------


def test_aadb_lists_and_image_folder(tmp_path: Path) -> None:
    info = make_tiny_aadb(tmp_path, n_train=8, n_val=3, n_test=4)
    name, _ = info["scores"]["train"][0]
    (info["image_dir"] / name).unlink()
    sp = load_splits("aadb", tmp_path)
    assert (len(sp.train), len(sp.val), len(sp.test)) == (7, 3, 4)
    assert sp.task == "regression" and sp.n_skipped == {"missing": 1}
    expected = dict(info["scores"]["test"])
    for s in sp.test:
        assert s.target == pytest.approx(expected[s.id]) and s.path.parent == info["image_dir"]
        assert s.label == int(s.target >= 0.5)


def test_aadb_images_in_root_and_missing_list(tmp_path: Path) -> None:
    (tmp_path / "x.jpg").write_bytes(b"\xff\xd8 not empty")
    for key, fname in LISTS.items():
        (tmp_path / fname).write_text("x.jpg 0.7\n" if key == "train" else "")
    sp = load_splits("aadb", tmp_path)
    assert [s.path for s in sp.train] == [tmp_path / "x.jpg"]
    (tmp_path / LISTS["test"]).unlink()
    with pytest.raises(DataError, match="lacks imgListTestNewRegression_score.txt"):
        load_splits("aadb", tmp_path)
    (tmp_path / LISTS["test"]).write_text("x.jpg oops\n")
    with pytest.raises(DataError, match="line 1: score 'oops' is not a number"):
        load_splits("aadb", tmp_path)


def test_aadb_test_overlap_is_removed_from_training(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "b.jpg").write_bytes(b"x")
    (tmp_path / LISTS["train"]).write_text("a.jpg 0.2\nb.jpg 0.9\n")
    (tmp_path / LISTS["val"]).write_text("")
    (tmp_path / LISTS["test"]).write_text("b.jpg 0.9\n")
    sp = load_splits("aadb", tmp_path)
    assert [s.id for s in sp.train] == ["a.jpg"] and sp.n_skipped == {"overlaps_test": 1}


# --- CSV ----------------------------------------------------------------------------------------


def test_csv_score_regression_with_relative_paths(tmp_path: Path) -> None:
    info = make_tiny_csv(tmp_path, n=20)
    sp = load_splits("csv", info["csv"], seed=0)
    assert sp.task == "regression"
    assert (len(sp.train), len(sp.val), len(sp.test)) == (16, 2, 2)
    every = sp.train + sp.val + sp.test
    assert {s.id for s in every} == {r["path"] for r in info["rows"]}
    assert all(s.path == tmp_path / s.id and s.path.is_file() for s in every)
    assert sp.threshold is not None and all(s.label == int(s.target >= sp.threshold) for s in every)
    # A threshold makes it classification; the folder form finds train.csv; same seed, same split.
    cls = load_splits("csv", tmp_path, threshold=5.0, seed=0)
    assert cls.task == "classification" and all(s.label == int(s.target > 5.0) for s in cls.train)
    assert cls.fingerprints == sp.fingerprints


def test_csv_label_column_and_test_csv(tmp_path: Path) -> None:
    info = make_tiny_csv(tmp_path, n=20, column="label", with_test=True)
    sp = load_splits("csv", tmp_path / "train.csv", val_size=3)
    assert sp.task == "classification" and len(sp.val) == 3
    assert {s.id for s in sp.test} == {r["path"] for r in info["rows"][16:]}
    assert all(s.label in (0, 1) and s.target == float(s.label) for s in sp.train)


def test_csv_groups_never_straddle_splits(tmp_path: Path) -> None:
    make_tiny_csv(tmp_path, n=40, groups=13)
    for seed in range(4):
        sp = load_splits("csv", tmp_path, seed=seed, val_size=0.2)
        where: dict[str, set[str]] = {}
        for name in ("train", "val", "test"):
            for s in getattr(sp, name):
                where.setdefault(s.group, set()).add(name)
        assert all(len(v) == 1 for v in where.values()) and sp.val and sp.test


def test_holdout_keeps_groups_together(tmp_path: Path) -> None:
    items = [Sample(f"{i}", tmp_path, 0.0, 0, group=f"g{i // 3}") for i in range(30)]
    kept, held = seeded_holdout(items, 7, seed=5, group_key=lambda s: s.group)
    assert len(held) == 9  # whole groups of 3 until >= 7
    assert not {s.group for s in kept} & {s.group for s in held}


def test_csv_errors_and_skips(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "e.jpg").write_bytes(b"")
    csv = tmp_path / "mine.csv"
    csv.write_text("Path,Score\na.jpg,3\ne.jpg,4\ngone.jpg,5\n" + "".join(f"a.jpg,{i}\n" for i in range(1)))
    with pytest.raises(DataError, match="need at least 3 usable photos"):
        load_splits("csv", csv)
    csv.write_text("file,score\na.jpg,1\n")
    with pytest.raises(DataError, match="lacks path and score/label"):
        load_splits("csv", csv)
    csv.write_text("path,label\na.jpg,2\n")
    with pytest.raises(DataError, match="line 2: label must be 0 or 1"):
        load_splits("csv", csv)
    with pytest.raises(DataError, match="no train.csv"):
        load_splits("csv", tmp_path)
    for i in range(5):
        (tmp_path / f"ok{i}.jpg").write_bytes(b"x")
    csv.write_text("path,score\n" + "".join(f"ok{i}.jpg,{i / 5}\n" for i in range(5)) + "e.jpg,1\ngone.jpg,0\nok0.jpg,0.3\n")
    sp = load_splits("csv", csv)
    assert sp.n_skipped == {"empty": 1, "missing": 1, "duplicate": 1} and sp.threshold == 0.5


def test_skip_rule_shared_by_the_loaders(tmp_path: Path) -> None:
    """First listing wins; a repeat is a duplicate even when the first was skipped for a problem."""
    log, seen = SkipLog(), set()
    assert log.admit("a", "train", seen, None)
    assert not log.admit("a", "test", seen, None)  # repeat of an admitted id
    assert not log.admit("b", "train", seen, "no_votes")
    assert not log.admit("b", "train", seen, None)  # repeat of a skipped id: still a duplicate
    assert log.items == [("a", "duplicate"), ("b", "no_votes"), ("b", "duplicate")]
    assert log.by_split == {"test": {"duplicate": 1}, "train": {"no_votes": 1, "duplicate": 1}}
    items = [Sample(f"{i}", tmp_path, 0.0, 0) for i in range(10)]
    sp = capped_splits(
        items, items[:2], items[2:5], log, max_items=3, seed=1, task="regression", threshold=0.5,
        kind="csv", root=tmp_path, threshold_inclusive=True,
    )
    assert (len(sp.train), len(sp.val), len(sp.test)) == (3, 2, 3)
    assert sp.n_skipped == {"duplicate": 2, "no_votes": 1} and sp.skipped_in("train") == {"no_votes": 1, "duplicate": 1}


# --- transforms ---------------------------------------------------------------------------------


@pytest.fixture()
def photo() -> Image.Image:
    g = torch.Generator().manual_seed(0)
    arr = torch.randint(0, 256, (30, 50, 3), generator=g, dtype=torch.uint8).numpy()
    return Image.fromarray(arr, mode="RGB")


def test_mpa_patches_shape_randomness_and_reproducibility(photo: Image.Image) -> None:
    t = mpa_train_transform(resize_shorter=40, crop=32, patches=6)
    torch.manual_seed(0)
    a = t(photo)
    b = t(photo)
    torch.manual_seed(0)
    a2 = t(photo)
    assert a.shape == (6, 3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, a2) and not torch.equal(a, b)
    assert any(not torch.equal(a[0], a[k]) for k in range(1, 6))  # patches are independent
    assert build_train_transform(MPA_PRE, patches=2)(photo).shape == (2, 3, 32, 32)
    # Normalisation: a mid-grey image maps to about (0.5 - mean) / std.
    grey = mpa_train_transform(40, 32, 1)(Image.new("RGB", (50, 30), (128, 128, 128)))
    assert grey[0, 0].mean().item() == pytest.approx((128 / 255 - 0.485) / 0.229, abs=1e-3)


def test_mpa_flip_happens_and_is_seeded() -> None:
    # A horizontal ramp as wide as the crop: the only randomness left is the flip.
    ramp = Image.fromarray(torch.arange(32, dtype=torch.uint8).mul(8).repeat(32, 1).unsqueeze(-1).repeat(1, 1, 3).numpy())
    t = mpa_train_transform(resize_shorter=32, crop=32, patches=16)
    torch.manual_seed(1)
    x = t(ramp)
    increasing = (x[:, 0, 0, -1] > x[:, 0, 0, 0]).tolist()
    assert any(increasing) and not all(increasing)


def test_tta_crops_deterministic_per_key(photo: Image.Image) -> None:
    from aescore.data.transforms import Preprocess

    recipe = Preprocess.from_card({**MPA_PRE, "train": {"kind": "mpa", "resize_shorter": 40, "crop": 32}})
    state = torch.get_rng_state()
    a, b, c = recipe.tta_views(photo, 5, "img1"), recipe.tta_views(photo, 5, "img1"), recipe.tta_views(photo, 5, "img2")
    assert torch.equal(torch.get_rng_state(), state)  # global RNG untouched
    assert a.shape == (5, 3, 32, 32) and torch.equal(a, b) and not torch.equal(a, c)
    assert build_eval_transform_for_training(MPA_PRE, 4)(photo, key=1).shape == (4, 3, 32, 32)
    assert build_eval_transform_for_training(MPA_PRE, None)(photo).shape == (1, 3, 32, 32)


def test_rgnet_transforms(photo: Image.Image) -> None:
    t = rgnet_train_transform(size=36)
    torch.manual_seed(3)
    a, b = t(photo), t(photo)
    torch.manual_seed(3)
    assert a.shape == (3, 36, 36) and torch.equal(t(photo), a) and not torch.equal(a, b)
    assert build_train_transform(RGNET_PRE, patches=4)(photo).shape == (3, 36, 36)
    e = rgnet_eval_transform(36)
    assert e(photo).shape == (3, 36, 36) and torch.equal(e(photo), build_eval_transform_for_training(RGNET_PRE, 15)(photo))
    with pytest.raises(ValueError):
        build_train_transform({"train": {"kind": "other"}}, 1)
