"""EXIF orientation and the default model's detail crops (issue 23, item 6): one photo stored in
each of the 8 EXIF orientations is decoded to the same upright pixels (data/images.py load_rgb)
before ``transforms.detail_boxes`` places its grid, so the 8 get the same network input (the
same whole frame and the same detail crops) and scores within 0.002 under both runtimes.

(Files whose stored pixels differ, e.g. each orientation re-encoded as JPEG, are a different
matter: their scores differ by the re-encoding, whatever the crops.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aescore import cull
from aescore.data.images import load_rgb
from aescore.data.transforms import Preprocess
from aescore.weights import default_weights_path, read_card

pytestmark = pytest.mark.usefixtures("shipped_models_only")

REPO = Path(__file__).resolve().parents[1]

# EXIF Orientation -> the transpose that turns the upright photo into the stored pixels (the
# inverse of what a viewer applies to display them).
_T = Image.Transpose
TO_STORED = {1: None, 2: _T.FLIP_LEFT_RIGHT, 3: _T.ROTATE_180, 4: _T.FLIP_TOP_BOTTOM,
             5: _T.TRANSPOSE, 6: _T.ROTATE_90, 7: _T.TRANSVERSE, 8: _T.ROTATE_270}


def _upright() -> Image.Image:
    """A real photo (mid-range score), 517 x 389 px: larger than the default recipe's 160 px
    detail crops in both edges (3 x 2 grid), with odd margins around the centred grid, so any
    rounding or scan-order dependence of the grid would show."""
    with Image.open(REPO / "samples" / "coffee.jpg") as img:
        return img.convert("RGB").crop((41, 7, 41 + 517, 7 + 389))


def _stored(folder: Path, ext: str) -> list[Path]:
    """The upright photo written in each of the 8 EXIF orientations (pixels stored transformed,
    tag 0x0112 set so that a viewer shows them upright)."""
    up = _upright()
    out = []
    for orientation, to_stored in TO_STORED.items():
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = folder / f"o{orientation}.{ext}"
        (up if to_stored is None else up.transpose(to_stored)).save(path, exif=exif)
        out.append(path)
    return out


def _recipe() -> Preprocess:
    return Preprocess.from_card(read_card(default_weights_path())["preprocess"])


def test_the_8_orientations_decode_alike_and_pick_the_same_detail_crops(tmp_path: Path) -> None:
    recipe = _recipe()
    assert recipe.detail is not None  # the default model uses detail crops
    up = np.asarray(_upright())
    inputs = []
    for path in _stored(tmp_path, "png"):
        img = load_rgb(path, min_shorter=recipe.decode_size())
        assert np.array_equal(np.asarray(img), up), path.name
        inputs.append(recipe.array(img))  # what the ONNX runtime is fed (torch wraps the same arrays)
    for x in inputs[1:]:
        assert np.array_equal(x.whole, inputs[0].whole) and np.array_equal(x.crops, inputs[0].crops)


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_the_8_orientations_score_within_0_002(tmp_path: Path, runtime: str) -> None:
    if runtime == "onnx":
        pytest.importorskip("onnxruntime")
    settings = cull.Settings(device="cpu", workers=0, use_cache=False, runtime=runtime)
    run = cull.score_photos(_stored(tmp_path, "png"), settings)
    scores = [p.score for p in run.photos]
    assert len(scores) == 8 and not run.skipped
    assert 0.05 < scores[0] < 0.95  # a mid-range score, where a different crop would show
    assert max(scores) - min(scores) <= 0.002, scores
