"""Decoding real-library photo files, and the optimised scorer against a naive reference."""

from __future__ import annotations

import builtins
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aescore.data.images import load_rgb
from aescore.errors import ImageDecodeError

from helpers import BAD, GOOD, make_photo_folder, pattern

# --------------------------------------------------------------------------- load_rgb


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_photo_folder(tmp_path_factory.mktemp("photos"))


@pytest.mark.parametrize("name", GOOD)
def test_every_good_mode_becomes_rgb(photos: dict[str, Path], name: str) -> None:
    img = load_rgb(photos[name])
    assert img.mode == "RGB" and min(img.size) > 0


@pytest.mark.parametrize("name,reason", [("truncated", "cannot decode"), ("empty", "empty file"), ("notimage", "not a recognised image"), ("bomb", "decompression-bomb")])
def test_unreadable_files_raise_with_reason(photos: dict[str, Path], name: str, reason: str) -> None:
    with pytest.raises(ImageDecodeError) as info:
        load_rgb(photos[name])
    assert reason in info.value.reason


def test_bomb_guard_stays_on_for_a_real_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.png"
    Image.fromarray(pattern(64, 64, 0)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 px > 2 * 1000: an error, not a warning
    with pytest.raises(ImageDecodeError, match="decompression-bomb"):
        load_rgb(path)


def test_big_but_allowed_image_and_corrupt_exif_decode_without_warnings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import warnings

    big = tmp_path / "big.png"
    Image.fromarray(pattern(64, 64, 0)).save(big)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(pattern(60, 50, 1)).save(buf, "JPEG", exif=exif)
    data = bytearray(buf.getvalue())
    at = data.find(b"Exif\0\0") + 6 + 8
    data[at : at + 2] = b"\xff\x7f"  # IFD0 claims 32767 entries: Pillow warns "Corrupt EXIF data"
    bad_exif = tmp_path / "bad_exif.jpg"
    bad_exif.write_bytes(bytes(data))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # 4096 px: between 1x and 2x the limit
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert load_rgb(big).size == (64, 64)
        assert load_rgb(bad_exif).mode == "RGB"
    assert not caught, [str(w.message) for w in caught]


def test_sixteen_bit_grey_is_scaled_not_clipped(photos: dict[str, Path]) -> None:
    arr = np.asarray(load_rgb(photos["png16"]))
    assert arr[0, 0, 0] == 0 and arr[-1, -1, 0] == 255 and 100 < arr[24, 32, 0] < 160


def test_sixteen_bit_rgb_is_scaled_to_eight_bits(tmp_path: Path) -> None:
    # Written by hand (Pillow cannot save 16-bit RGB): a 48-bit PNG with a known ramp.
    w, h = 32, 8
    values = np.linspace(0, 65535, w * h * 3).round().astype(">u2").reshape(h, w * 3)
    raw = b"".join(b"\0" + row.tobytes() for row in values)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path = tmp_path / "rgb48.png"
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    got = np.asarray(load_rgb(path)).astype(int).reshape(h, w * 3)
    assert np.abs(got - values.astype(int) / 257).max() <= 1


def test_transparency_composites_onto_white(tmp_path: Path) -> None:
    path = tmp_path / "la.png"
    Image.new("LA", (8, 8), (0, 0)).save(path)  # black, fully transparent
    assert np.asarray(load_rgb(path)).min() == 255


def test_exif_orientation_is_applied(photos: dict[str, Path]) -> None:
    a, b = load_rgb(photos["upright"]), load_rgb(photos["rotated"])
    assert a.size == b.size == (72, 48)
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_draft_decodes_jpeg_at_reduced_size_but_not_below_target(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    Image.fromarray(pattern(800, 600, 0)).save(path, quality=90)
    assert load_rgb(path).size == (800, 600)
    small = load_rgb(path, min_shorter=140)
    assert min(small.size) >= 140 and small.size == (200, 150)  # 1/4 DCT scaling


@pytest.mark.parametrize("ext,extra", [(".heic", "heif"), (".cr2", "raw"), (".nef", "raw")])
def test_missing_extra_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ext: str, extra: str) -> None:
    path = tmp_path / f"IMG_0001{ext}"
    path.write_bytes(b"\0" * 64)
    real_import = builtins.__import__

    def no_extras(name: str, *args: object, **kwargs: object) -> object:
        if name in ("pillow_heif", "rawpy"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_extras)
    with pytest.raises(ImageDecodeError) as info:
        load_rgb(path)
    assert f"pip install 'aescore[{extra}]'" in info.value.reason


def test_heif_round_trip_when_extra_installed(tmp_path: Path) -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    path = tmp_path / "photo.heic"
    pillow_heif.register_heif_opener()
    Image.fromarray(pattern(64, 48, 0)).save(path, quality=90)
    img = load_rgb(path)
    assert img.mode == "RGB" and img.size == (64, 48)


def test_raw_without_preview_or_garbage_is_a_decode_error(tmp_path: Path) -> None:
    pytest.importorskip("rawpy")
    path = tmp_path / "fake.dng"
    path.write_bytes(b"not a raw file at all" * 10)
    with pytest.raises(ImageDecodeError, match="camera RAW"):
        load_rgb(path)


# --------------------------------------------------------------------------- scorer equivalence


def _naive_scores(weights: Path, paths: list[Path]) -> list[float]:
    """The unoptimised reference: full decode, one image at a time, float32, contiguous layout."""
    import torch

    from aescore.data.transforms import build_eval_transform
    from aescore.weights import load_weights

    model, card = load_weights(weights)
    transform = build_eval_transform(card["preprocess"])
    out = []
    with torch.no_grad():
        for path in paths:
            x = transform(load_rgb(path))[None]
            out.append(float(torch.softmax(model(x), dim=1)[0, 1]))
    return out


def test_optimised_path_matches_naive_on_lossless_inputs(photos: dict[str, Path], tiny_weights: Path) -> None:
    """Draft decode, shape batching, BatchNorm folding and channels_last must not change scores (> 1e-4).

    Non-JPEG inputs only: on JPEGs, draft mode legitimately changes pixels (DCT-domain scaling)."""
    from aescore.inference.scorer import Scorer

    names = ["spaces", "unicode", "newline", "png16", "palette", "la", "gif", "tiff", "upright", "rotated"]
    paths = [photos[n] for n in names]
    scorer = Scorer(tiny_weights, device="cpu", batch_size=8, workers=0)
    fast = [r.score for r in scorer.score_paths(paths)]
    assert scorer.forward_calls < len(paths)  # equal shapes really were batched together
    assert not any(type(m).__name__ == "BatchNorm2d" for m in scorer.model.modules())  # really folded
    naive = _naive_scores(tiny_weights, paths)
    assert np.allclose(fast, naive, atol=1e-4)
    # Decoding in a worker process overlapping the network, and the same Scorer (model loaded
    # once, reused) for a second call, give the same scores too.
    model = scorer.model
    scorer.batch_size, scorer.workers = 3, 1
    again = [r.score for r in scorer.score_paths(paths)]
    assert scorer.model is model and np.allclose(again, naive, atol=1e-4)


def test_draft_changes_jpeg_scores_only_slightly(tmp_path: Path, tiny_weights: Path) -> None:
    from aescore.inference.scorer import Scorer

    path = tmp_path / "big.jpg"
    Image.fromarray(pattern(640, 480, 3)).save(path, quality=92)
    draft = next(Scorer(tiny_weights, device="cpu", workers=0).score_paths([path])).score
    full = next(Scorer(tiny_weights, device="cpu", workers=0, draft=False).score_paths([path])).score
    assert draft is not None and full is not None and abs(draft - full) < 0.02


def test_rotated_and_upright_score_the_same(photos: dict[str, Path], tiny_weights: Path) -> None:
    from aescore.inference.scorer import Scorer

    a, b = (r.score for r in Scorer(tiny_weights, device="cpu", workers=0).score_paths([photos["upright"], photos["rotated"]]))
    assert a is not None and b is not None and abs(a - b) < 1e-5


def test_scorer_reports_failures_and_keeps_order_with_workers(photos: dict[str, Path], tiny_weights: Path) -> None:
    from aescore.inference.scorer import Scorer

    names = GOOD + BAD
    results = list(Scorer(tiny_weights, device="cpu", batch_size=4, workers=1).score_paths([photos[n] for n in names]))
    assert [r.path for r in results] == [str(photos[n]) for n in names]
    assert all(r.score is not None and 0 <= r.score <= 1 for r in results[: len(GOOD)])
    assert all(r.score is None and r.reason for r in results[len(GOOD) :])


def test_tta_is_deterministic_and_differs_from_full(photos: dict[str, Path], tiny_weights: Path) -> None:
    from aescore.inference.scorer import Scorer

    paths = [photos["jpeg"], photos["progressive"]]
    one = [r.score for r in Scorer(tiny_weights, device="cpu", workers=0, tta_crops=5).score_paths(paths)]
    two = [r.score for r in Scorer(tiny_weights, device="cpu", workers=0, tta_crops=5).score_paths(paths)]
    full = [r.score for r in Scorer(tiny_weights, device="cpu", workers=0).score_paths(paths)]
    assert one == two and one != full


def test_draft_target_covers_the_multi_crop_base() -> None:
    from aescore.data.transforms import Preprocess

    square = Preprocess.from_card({"eval": {"mode": "square", "size": 300}, "train": {"kind": "rgnet", "size": 300}})
    assert square.decode_size() == 300 and square.decode_size(10) == square.tta_base > 300
    shorter = Preprocess.from_card({"eval": {"mode": "shorter", "size": 256, "max_aspect": 1.5}, "train": {"crop": 224}})
    assert shorter.decode_size() == shorter.decode_size(10) == 256


def test_embeddings_come_back_when_asked(photos: dict[str, Path], tiny_weights: Path) -> None:
    from aescore.inference.scorer import Scorer

    scorer = Scorer(tiny_weights, device="cpu", workers=0)
    (r,) = scorer.score_paths([photos["jpeg"]], with_embeddings=True)
    assert r.embedding is not None and r.embedding.ndim == 1 and r.embedding.size > 8
    (plain,) = scorer.score_paths([photos["jpeg"]])
    assert plain.embedding is None and abs(plain.score - r.score) < 1e-6  # same score either way
