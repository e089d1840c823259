"""AVA parsing, the standard split, thresholds, fingerprints and skipping of broken images."""

from __future__ import annotations

import hashlib
import math
import random
from pathlib import Path

import pytest

from aescore.data import ImageDataset, collate_skipping, load_splits
from aescore.data.ava import is_positive, load_ava, mean_score, parse_ava_line, parse_ava_txt
from aescore.data.splits import Sample, seeded_holdout, split_fingerprint
from helpers import make_tiny_ava
from aescore.errors import DataError

ROW = "1 953619 0 1 5 17 38 36 15 6 5 1 1 22 1396"


def test_parser_keeps_all_ten_rating_columns() -> None:
    row = parse_ava_line(ROW)
    assert row.index == 1 and row.image_id == "953619"
    assert row.votes == (0, 1, 5, 17, 38, 36, 15, 6, 5, 1)  # rating 10 has one vote
    assert (row.tag1, row.tag2, row.challenge) == (1, 22, 1396)
    assert row.n_votes == 124
    assert row.mean == pytest.approx(699 / 124)


def test_rating_ten_votes_move_the_mean() -> None:
    # All ten columns non-zero and a heavy rating-10 column: dropping it would change the mean a lot.
    row = parse_ava_line("7 123 1 2 3 4 5 6 7 8 9 50 0 0 77")
    assert row.votes == (1, 2, 3, 4, 5, 6, 7, 8, 9, 50)
    expected = sum(r * v for r, v in zip(range(1, 11), row.votes)) / sum(row.votes)
    assert row.mean == pytest.approx(expected)
    assert row.mean == pytest.approx(785 / 95)
    assert mean_score((0,) * 9 + (3,)) == 10.0
    assert math.isnan(mean_score((0,) * 10))


def test_parser_rejects_malformed_rows(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="line 2: expected 15 columns"):
        p = tmp_path / "AVA.txt"
        p.write_text(ROW + "\n1 2 3\n")
        parse_ava_txt(p)
    with pytest.raises(DataError, match="non-integer"):
        parse_ava_line(ROW.replace("1396", "x"))


def test_threshold_strict_vs_inclusive() -> None:
    assert is_positive(5.0, 5.0, inclusive=False) == 0  # MPA: mean > 5
    assert is_positive(5.0, 5.0, inclusive=True) == 1  # RGNet: mean >= 5
    assert is_positive(5.01, 5.0) == 1 and is_positive(4.99, 5.0, inclusive=True) == 0


@pytest.fixture(scope="module")
def tiny_ava(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return make_tiny_ava(tmp_path_factory.mktemp("ava"), n_train=30, n_test=10, seed=3)


def test_standard_split_from_jpgl(tiny_ava: dict) -> None:
    sp = load_splits("ava", tiny_ava["root"], val_size=5)
    test_ids = {s.id for s in sp.test}
    usable_test = set(tiny_ava["test_ids"]) - set(tiny_ava["empty_ids"])
    assert test_ids == usable_test  # the truncated test image is only found on decode
    train_val = {s.id for s in sp.train} | {s.id for s in sp.val}
    broken = set(tiny_ava["missing_ids"] + tiny_ava["no_vote_ids"])
    assert train_val == set(tiny_ava["train_ids"]) - broken
    assert not train_val & test_ids
    assert len(sp.val) == 5 and sp.task == "classification" and sp.threshold == 5.0
    assert sp.n_skipped == {"missing": 1, "empty": 1, "no_votes": 1}
    assert sorted(sp.skipped) == sorted(
        [(tiny_ava["missing_ids"][0], "missing"), (tiny_ava["empty_ids"][0], "empty"), (tiny_ava["no_vote_ids"][0], "no_votes")]
    )
    assert set(tiny_ava["rating10_ids"]) & train_val
    for s in sp.train + sp.test:
        assert s.target == pytest.approx(tiny_ava["means"][s.id])
        assert len(s.votes) == 10 and s.path == tiny_ava["root"] / "images" / f"{s.id}.jpg"


def test_threshold_flag_reaches_labels(tiny_ava: dict) -> None:
    b = tiny_ava["borderline_id"]
    strict = load_splits("ava", tiny_ava["root"], val_size=1, seed=1)
    inclusive = load_splits("ava", tiny_ava["root"], val_size=1, seed=1, threshold_inclusive=True)
    label = {s.id: s.label for s in strict.train + strict.val}
    label_inc = {s.id: s.label for s in inclusive.train + inclusive.val}
    assert label[b] == 0 and label_inc[b] == 1
    assert all(s.label == int(s.target > 5.0) for s in strict.train + strict.test)
    higher = load_splits("ava", tiny_ava["root"], val_size=1, threshold=6.0)
    assert all(s.label == int(s.target > 6.0) for s in higher.train)


def test_fingerprints_match_documented_form(tiny_ava: dict) -> None:
    sp = load_splits("ava", tiny_ava["root"], val_size=4)
    ids = [s.id for s in sp.test]
    expected = hashlib.sha256("\n".join(sorted(ids)).encode("utf-8")).hexdigest()
    assert sp.fingerprints["test"] == expected == split_fingerprint(reversed(ids))
    assert set(sp.fingerprints) == {"train", "val", "test"}
    again = load_splits("ava", tiny_ava["root"], val_size=4)
    assert again.fingerprints == sp.fingerprints
    other_seed = load_splits("ava", tiny_ava["root"], val_size=4, seed=9)
    assert other_seed.fingerprints["test"] == sp.fingerprints["test"]
    assert other_seed.fingerprints["val"] != sp.fingerprints["val"]


def test_holdout_is_deterministic_and_order_independent(tmp_path: Path) -> None:
    items = [Sample(str(i), tmp_path / f"{i}.jpg", 5.0, 0) for i in range(200)]
    kept, held = seeded_holdout(items, 20, seed=0)
    shuffled = items[:]
    random.Random(1).shuffle(shuffled)
    kept2, held2 = seeded_holdout(shuffled, 20, seed=0)
    assert [s.id for s in held] == [s.id for s in held2] and len(held) == 20
    assert {s.id for s in kept} | {s.id for s in held} == {s.id for s in items}
    assert not {s.id for s in kept} & {s.id for s in held}
    _, held3 = seeded_holdout(items, 20, seed=1)
    assert {s.id for s in held3} != {s.id for s in held}
    _, frac = seeded_holdout(items, 0.25, seed=0)
    assert len(frac) == 50
    with pytest.raises(DataError):
        seeded_holdout(items, 200, seed=0)


def test_ava_row_order_does_not_change_split(tiny_ava: dict, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "ava"
    shutil.copytree(tiny_ava["root"], copy)
    lines = (copy / "AVA.txt").read_text().splitlines(keepends=True)
    random.Random(0).shuffle(lines)
    (copy / "AVA.txt").write_text("".join(lines))
    a = load_splits("ava", tiny_ava["root"], val_size=6, seed=2)
    b = load_splits("ava", copy, val_size=6, seed=2)
    assert a.fingerprints == b.fingerprints


def test_max_items_caps_each_split(tiny_ava: dict) -> None:
    sp = load_splits("ava", tiny_ava["root"], val_size=6, max_items=4)
    full = load_splits("ava", tiny_ava["root"], val_size=6)
    assert len(sp.train) == len(sp.val) == len(sp.test) == 4
    assert {s.id for s in sp.val} <= {s.id for s in full.val}


def test_missing_layout_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="lacks AVA.txt") as err:
        load_splits("ava", tmp_path)
    assert "\n" not in str(err.value) and "generic_test.jpgl" in str(err.value)
    with pytest.raises(DataError, match="not a folder"):
        load_splits("ava", tmp_path / "nope")
    with pytest.raises(DataError, match="unknown dataset kind"):
        load_splits("imagenet", tmp_path)


def test_truncated_image_is_a_failure_record_and_collate_skips_it(tiny_ava: dict) -> None:
    import torch

    sp = load_splits("ava", tiny_ava["root"], val_size=1)
    truncated = tiny_ava["truncated_ids"][1]
    samples = sp.test[:4]
    if truncated not in {s.id for s in samples}:
        samples = [next(s for s in sp.test if s.id == truncated)] + samples[:3]
    ds = ImageDataset(samples, lambda img: torch.zeros(3, 8, 8))
    items = [ds[i] for i in range(len(ds))]
    bad = [it for it in items if it.get("failed")]
    assert len(bad) == 1 and samples[bad[0]["index"]].id == truncated and bad[0]["reason"]
    assert ds.failed == {bad[0]["index"]: bad[0]["reason"]}
    batch, failed = collate_skipping(items)
    assert failed == [(bad[0]["index"], bad[0]["reason"])]
    assert batch["image"].shape == (3, 3, 8, 8)
    assert batch["target"].dtype == torch.float32 and batch["label"].dtype == torch.int64
    assert truncated not in {samples[i].id for i in batch["index"].tolist()}
    assert collate_skipping([bad[0]]) == (None, failed)


def test_default_validation_is_2000_seeded_training_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A full-size index without 22,000 image files: the cheap existence check is stubbed out.
    import aescore.data.ava as ava

    monkeypatch.setattr(ava, "stat_check", lambda path: None)
    (tmp_path / "images").mkdir()
    (tmp_path / "aesthetics_image_lists").mkdir()
    rows = [f"{i} {100000 + i} 0 0 1 2 3 4 3 2 1 {i % 3} 0 0 {i % 50}\n" for i in range(1, 22001)]
    (tmp_path / "AVA.txt").write_text("".join(rows))
    test_ids = [str(100000 + i) for i in range(1, 22001, 11)]  # 2,000 test ids
    (tmp_path / "aesthetics_image_lists" / "generic_test.jpgl").write_text("\n".join(test_ids) + "\n")
    sp = load_splits("ava", tmp_path, seed=0)
    assert (len(sp.train), len(sp.val), len(sp.test)) == (18000, 2000, 2000)
    assert not {s.id for s in sp.val} & ({s.id for s in sp.train} | set(test_ids))
    assert load_splits("ava", tmp_path, seed=0).fingerprints == sp.fingerprints  # fixed by the seed
    assert load_splits("ava", tmp_path, seed=1).fingerprints["val"] != sp.fingerprints["val"]
    assert len(load_splits("ava", tmp_path, val_size=500).val) == 500


def test_skips_are_counted_per_listed_split(tiny_ava: dict) -> None:
    sp = load_splits("ava", tiny_ava["root"], val_size=5)
    assert sp.skipped_in("test") == {"empty": 1}  # the empty image is a test id
    assert sp.skipped_in("train") == {"missing": 1, "no_votes": 1}
    assert sum(sum(c.values()) for c in sp.n_skipped_by_split.values()) == sp.total_skipped


def test_test_list_ids_absent_from_ava_txt_are_counted(tmp_path: Path) -> None:
    # The usual AVA copies list ~70 test ids that AVA.txt lacks: they explain 20,000 -> ~19,930.
    data = make_tiny_ava(tmp_path / "ava", corrupt=False)
    jpgl = data["root"] / "aesthetics_image_lists" / "generic_test.jpgl"
    jpgl.write_text(jpgl.read_text() + "999991\n999992.jpg\n")
    sp = load_ava(data["root"])
    assert sp.skipped_in("test") == {"not_in_ava_txt": 2}
    assert ("999991", "not_in_ava_txt") in sp.skipped and sp.total_skipped == 2
    listed = {line.strip().removesuffix(".jpg") for line in jpgl.read_text().splitlines() if line.strip()}
    assert len(sp.test) + sum(sp.skipped_in("test").values()) == len(listed)
