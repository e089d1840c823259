"""`aescore evaluate` and the metrics: library-computed values, JSON/table output, train/test overlap guard."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from typer.testing import CliRunner

from aescore.cli.main import get_app
from aescore.data.splits import split_fingerprint
from helpers import make_tiny_ava
from aescore.engine.evaluate import check_train_overlap, write_train_ids
from aescore.engine.metrics import classification_metrics, compute_metrics, correlation_metrics
from aescore.errors import DataError, UsageError, WeightsError


def test_metrics_match_hand_checked_values() -> None:
    p = [0.9, 0.8, 0.3, 0.6, 0.2, 0.1]
    y = [1, 1, 1, 0, 0, 0]
    m = classification_metrics(p, y)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["balanced_accuracy"] == pytest.approx(4 / 6)
    # ranked: 1,1,0,1,0,0 -> AP = (1/1 + 2/2 + 3/4) / 3
    assert m["average_precision"] == pytest.approx((1 + 1 + 0.75) / 3)
    assert m["confusion_matrix"] == [[2, 1], [1, 2]]
    scores = [7.1, 6.5, 5.2, 4.9, 4.0, 3.3]
    c = correlation_metrics(p, scores)
    assert c["srcc"] == pytest.approx(spearmanr(p, scores).statistic)
    assert c["lcc"] == pytest.approx(pearsonr(p, scores).statistic)


def test_undefined_metrics_are_none_not_nan() -> None:
    m = compute_metrics([0.2, 0.3], [4.0, 4.0], [0, 0])
    assert m["average_precision"] is None and m["balanced_accuracy"] is None
    assert m["srcc"] is None and m["lcc"] is None and m["accuracy"] == 1.0
    json.dumps(m, allow_nan=False)
    assert compute_metrics([], [], [])["n_images"] == 0


class _S:
    def __init__(self, i: str) -> None:
        self.id = i


def _card(train_ids: list[str], sidecar: str | None, test_fp: str = "") -> dict:
    training = {"dataset": "ava", "train_ids_fingerprint": split_fingerprint(train_ids),
                "split_fingerprints": {"test": test_fp}}
    if sidecar:
        training["train_ids_file"] = {"path": sidecar, "sha256": ""}
    return {"training": training}


def test_overlap_guard(tmp_path: Path) -> None:
    train = ["1", "2", "3"]
    write_train_ids(tmp_path / "best.train-ids.txt", train)
    card_path = tmp_path / "best.json"
    card = _card(train, "best.train-ids.txt")
    assert check_train_overlap(card, card_path, [_S("7"), _S("8")], "ava", "test") == "checked"
    with pytest.raises(DataError, match="1 of the 2 test images"):
        check_train_overlap(card, card_path, [_S("3"), _S("8")], "ava", "test")
    with pytest.raises(DataError, match="exactly the weights' training set"):
        check_train_overlap(_card(train, None), card_path, [_S(i) for i in train], "ava", "test")
    assert check_train_overlap(card, card_path, [_S("3")], "csv", "test") == "other-dataset"
    # No sidecar: the held-out split of training time is recognised; anything else is unverified.
    held = _card(train, None, split_fingerprint(["7", "8"]))
    assert check_train_overlap(held, card_path, [_S("8"), _S("7")], "ava", "test") == "held-out"
    assert check_train_overlap(held, card_path, [_S("9")], "ava", "test") == "unverified"
    # A sidecar that does not match the card is refused.
    (tmp_path / "best.train-ids.txt").write_text("1\n2\n")
    with pytest.raises(WeightsError):
        check_train_overlap(card, card_path, [_S("7")], "ava", "test")


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """Tiny AVA data and an untrained tiny MPA model whose card claims some training ids."""
    from aescore.engine.setup import sized_preprocess
    from aescore.models import create_model
    from aescore.weights import save_weights

    base = tmp_path_factory.mktemp("eval")
    data = make_tiny_ava(base / "ava")
    model = create_model("mpa_resnet18", backbone="resnet10t", pretrained=False)
    preprocess = sized_preprocess(model.default_preprocess, 32, 40)
    train_ids = [str(i) for i in data["train_ids"]]
    sha = write_train_ids(base / "w" / "m.train-ids.txt", train_ids)
    card = {"preprocess": preprocess, "training": {
        "dataset": "ava", "train_ids_fingerprint": split_fingerprint(train_ids),
        "train_ids_file": {"path": "m.train-ids.txt", "sha256": sha},
        "hyperparameters": {"seed": 0, "threshold_inclusive": False}}}
    save_weights(model, base / "w" / "m.safetensors", card)
    return data, base / "w" / "m.safetensors"


def _invoke(args: list) -> object:
    return CliRunner().invoke(get_app(), [str(a) for a in args])


def test_evaluate_json_is_one_object(weights: tuple[dict, Path]) -> None:
    data, path = weights
    res = _invoke(["evaluate", "--dataset", "ava", "--root", data["root"], "--weights", path,
                   "--workers", 0, "--json", "--tta-crops", 3])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)  # exactly one JSON document on stdout
    assert res.stdout.strip().count("\n") == 0
    for key in ("accuracy", "balanced_accuracy", "average_precision", "srcc", "lcc", "confusion_matrix",
                "split_fingerprint", "n_images", "n_skipped", "weights_sha256"):
        assert key in report
    # 16 test rows: one empty (skipped at indexing) and one truncated (found on decode); the
    # training rows' skips (a missing image, a row without votes) are not the test split's.
    assert report["n_images"] == len(data["test_ids"]) - 2
    assert report["skipped_reasons"] == {"empty": 1, "undecodable": 1} and report["n_skipped"] == 2
    assert report["n_skipped_dataset"] == data["n_skipped_at_index"] + 1
    assert report["tta_crops"] == 3 and report["train_overlap_check"] == "checked"
    from aescore.weights import file_sha256

    assert report["weights_sha256"] == file_sha256(path)
    assert 0 <= report["accuracy"] <= 1 and np.isfinite(report["lcc"])


def test_evaluate_table_and_refusal(weights: tuple[dict, Path]) -> None:
    data, path = weights
    res = _invoke(["evaluate", "--dataset", "ava", "--root", data["root"], "--weights", path, "--workers", 0])
    assert res.exit_code == 0, res.output
    for word in ("accuracy", "average_precision", "srcc", "split_fingerprint", "n_skipped"):
        assert word in res.stdout
    res = _invoke(["evaluate", "--dataset", "ava", "--root", data["root"], "--weights", path, "--workers", 0,
                   "--split", "val", "--json"])
    assert isinstance(res.exception, DataError) and "training set" in str(res.exception)


def test_evaluate_bad_dataset_is_a_usage_error_before_loading_weights(tmp_path: Path) -> None:
    res = _invoke(["evaluate", "--dataset", "foo", "--root", tmp_path, "--weights", tmp_path / "none.safetensors"])
    assert isinstance(res.exception, UsageError) and res.exception.exit_code == 2
    assert "--dataset must be one of ava, aadb, csv" in str(res.exception)


def test_label_rule_defaults_to_the_weights_paper() -> None:
    from aescore.engine.evaluate import _paper_inclusive

    assert _paper_inclusive({"training": {"preset": "rgnet"}}) is True  # RGNet: mean >= 5
    assert _paper_inclusive({"training": {"preset": "mpa-ada"}}) is False  # MPA: mean > 5
    assert _paper_inclusive({"architecture": "rgnet_densenet121"}) is True
    assert _paper_inclusive({"architecture": "mpa_resnet18"}) is False


@pytest.mark.parametrize("tta", [None, 3])
def test_evaluate_predictions_equal_score_jsonl(weights: tuple[dict, Path], tmp_path: Path, tta: int | None) -> None:
    """One inference core: for the same files, weights and recipe, `evaluate --predictions` and
    `score --jsonl` give the same P(high), with and without --tta-crops."""
    data, path = weights
    preds = tmp_path / "pred.jsonl"
    extra = ["--tta-crops", tta] if tta else []
    res = _invoke(["evaluate", "--dataset", "ava", "--root", data["root"], "--weights", path, "--workers", 0,
                   "--json", "--predictions", preds, *extra])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    scored = {r["path"]: r for r in rows if "p_high" in r}
    assert len(scored) == json.loads(res.stdout)["n_images"] and all({"label", "target"} <= set(r) for r in rows)
    assert sum("error" in r for r in rows) == 1  # the truncated test image
    out = CliRunner().invoke(get_app(), ["score", *scored, "--model", str(path), "--jsonl", "--no-cache",
                                         "--workers", "0", "--device", "cpu", *map(str, extra)])
    assert out.exit_code == 0, out.output
    by_path = {json.loads(line)["path"]: json.loads(line)["score"] for line in out.stdout.splitlines()}
    assert by_path.keys() == scored.keys()
    assert max(abs(by_path[p] - scored[p]["p_high"]) for p in scored) < 1e-4
