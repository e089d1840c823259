"""`learn`'s held-out figures come from what `score` computes (issue #23, fine-tune parity): each
held-out photo's P(high) that learn reports (`LearnResult.held_out_scores`) equals, within 1e-4,
what `aescore score --model NAME` prints for it with the personal model that held it out — the
head of its fold (the embedding head; `learn`'s default), or the fine-tuned model that learn saved
(`--fine-tune`, here on a base whose recipe has detail crops, trained on those crops too)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from helpers import make_tiny_weights, pattern, randomise_batchnorm

SHOOTS, PER_SHOOT = 6, 8


def _library(root: Path) -> dict[str, int]:
    """Photos in shoot folders and a rating for each (at random: parity does not need a taste)."""
    rng = np.random.default_rng(3)
    ratings: dict[str, int] = {}
    for s in range(SHOOTS):
        folder = root / f"shoot{s}"
        folder.mkdir(parents=True)
        for k in range(PER_SHOOT):
            path = folder / f"IMG_{k}.jpg"
            Image.fromarray(pattern(96 + 8 * (k % 3), 80, 10 * s + k)).save(path, quality=92)
            ratings[str(path)] = int(rng.integers(1, 6))
    return ratings


def _csv(path: Path, ratings: dict[str, int]) -> Path:
    path.write_text("path,rating\n" + "".join(f"{p},{r}\n" for p, r in sorted(ratings.items())), encoding="utf-8")
    return path


def _score(model: str, paths: list[str]) -> dict[str, float]:
    """``aescore score --model MODEL PATHS`` (no cache: computed now), as path -> score."""
    from aescore.cli.main import get_app

    result = CliRunner().invoke(get_app(), ["score", *paths, "--model", model, "--device", "cpu", "--workers", "0",
                                            "--no-cache", "--json"])
    assert result.exit_code == 0, result.output
    return {row["path"]: row["score"] for row in json.loads(result.stdout)}


def _tiny_faultnet(folder: Path) -> Path:
    """A random faultnet on a small timm backbone whose recipe has detail crops (64-px whole view,
    two 48-px crops), saved with its card."""
    from aescore.models import create_model
    from aescore.weights import save_weights

    torch.manual_seed(0)
    model = create_model("faultnet", backbone="resnet10t").eval()
    randomise_batchnorm(model)
    recipe = {"mean": [0.5] * 3, "std": [0.5] * 3,
              "eval": {"mode": "shorter", "size": 64, "max_aspect": 1.5, "detail": {"crops": 2, "size": 48, "decode_shorter": 200}}}
    path = folder / "tinyfault.safetensors"
    save_weights(model, path, {"name": "tinyfault", "preprocess": recipe, "training": {"dataset": "none"}})
    return path


def test_learn_held_out_scores_are_what_score_gives_the_model_of_each_fold(tmp_path: Path) -> None:
    from aescore.learn import learn
    from aescore.weights import read_card, save_head, user_models_dir

    base = make_tiny_weights(tmp_path)
    ratings = _library(tmp_path / "lib")
    result = learn([tmp_path / "lib"], "mine", model=base, ratings_csv=_csv(tmp_path / "r.csv", ratings),
                   device="cpu", folds=3, min_rated=20)
    held = result.held_out_scores
    assert set(held.scores) == set(ratings) and set(held.folds.values()) == set(held.heads) == {0, 1, 2}
    assert result.held_out.photos == len(ratings) and result.card["metrics"]["held_out"] == result.held_out.to_dict()

    worst = 0.0
    for fold, head in held.heads.items():
        # The personal model the fold's head makes, saved as learn saves one (head-only); `score` runs it.
        save_head(head, user_models_dir() / f"mine-fold{fold}.safetensors", {"name": f"mine-fold{fold}", "training": {"dataset": "none"}},
                  base_card=read_card(base), base_name="tiny", base_path=base)
        photos = sorted(p for p, f in held.folds.items() if f == fold)
        scored = _score(f"mine-fold{fold}", photos)
        worst = max(worst, max(abs(scored[p] - held.scores[p]) for p in photos))
    print(f"embedding head: max |learn - score| = {worst:.1e} over {len(held.scores)} photos")
    assert worst < 1e-4, worst


def test_fine_tune_held_out_scores_are_what_score_gives_the_saved_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aescore.learn import finetune, learn

    base = _tiny_faultnet(tmp_path)
    ratings = _library(tmp_path / "lib")
    seen: list[Any] = []
    rank_loss = finetune._rank_loss

    def spy(net: Any, inputs: Any) -> Any:
        seen.append((tuple(inputs.whole.shape), None if inputs.crops is None else tuple(inputs.crops.shape)))
        return rank_loss(net, inputs)

    monkeypatch.setattr(finetune, "_rank_loss", spy)
    result = learn([tmp_path / "lib"], "tuned", model=base, ratings_csv=_csv(tmp_path / "r.csv", ratings), device="cpu",
                   folds=3, min_rated=20, fine_tune=True, fine_tune_config=finetune.FineTuneConfig(steps=2, batch_pairs=4, crop=48))
    # Trained on the inputs the scorer builds: the whole frame and the recipe's two detail crops.
    assert seen == [((8, 3, 48, 48), (8, 2, 3, 48, 48))] * 2
    held = result.held_out_scores
    assert set(held.folds.values()) == {0} and not held.heads
    assert len(held.scores) == result.held_out.photos == result.card["training"]["fine_tuned"]["held_out_photos"]

    photos = sorted(held.scores)
    scored = _score("tuned", photos)  # the saved model, as any user would score with it
    worst = max(abs(scored[p] - held.scores[p]) for p in photos)
    print(f"fine-tuned: max |learn - score| = {worst:.1e} over {len(photos)} photos")
    assert worst < 1e-4, worst


def test_scaling_is_one_function_for_numpy_and_torch() -> None:
    """Fine-tuning scales its batches with the scorer's own scaling: torch gives NumPy's numbers."""
    from aescore.data.transforms import Preprocess

    recipe = Preprocess.from_card({"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                                   "eval": {"mode": "shorter", "size": 64, "detail": {"crops": 2, "size": 48}}})
    img = Image.fromarray(pattern(120, 90, 1))
    views = recipe.pixels(img)
    arrays = recipe.detail_arrays(img)
    assert views.whole.dtype == np.uint8 and views.crops.shape == (2, 48, 48, 3)
    whole = recipe.scale(torch.from_numpy(views.whole).permute(2, 0, 1))
    crops = recipe.scale(torch.from_numpy(views.crops).permute(0, 3, 1, 2))
    assert torch.equal(whole, torch.from_numpy(arrays.whole)) and torch.equal(crops, torch.from_numpy(arrays.crops))
    plain = Preprocess.from_card({"eval": {"mode": "shorter", "size": 64}})
    assert plain.pixels(img).crops is None
    assert np.array_equal(plain.array(img), plain.scale(plain.pixels(img).whole.transpose(2, 0, 1)))
