"""The generalising fault generator (aescore.data.faults): every implementation of every family
moves the image in its family's direction, even at the mildest severity, and more so at the
strongest; copies are deterministic per seed and carry correct labels; positives (shallow depth
of field, low key, high key) keep the subject as it was."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from aescore.data import faults as F


def _photo(neutral: bool = False, seed: int = 0) -> Image.Image:
    """256x192 test photo: smooth shading, textured areas and hard-edged shapes, midtones around 0.45."""
    rng = np.random.default_rng(seed)
    h, w = 192, 256
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    texture = ndimage.gaussian_filter(rng.normal(0, 1, (h, w, 3)), (1.5, 1.5, 0)) * 0.12
    a = 0.25 + 0.3 * xx[..., None] + 0.15 * yy[..., None] * np.array([1.0, 0.6, 0.3]) + texture
    for _ in range(8):  # sharp-edged shapes
        y0, x0 = rng.integers(0, h - 40), rng.integers(0, w - 40)
        a[y0:y0 + rng.integers(15, 40), x0:x0 + rng.integers(15, 40)] = rng.uniform(0.1, 0.85, 3)
    if neutral:
        a = a.mean(2, keepdims=True).repeat(3, 2)
    return F._img(np.clip(a, 0, 1).astype(np.float32))


def _luma(img: Image.Image) -> np.ndarray:
    return F._arr(img) @ F.LUMA


def _hf(img: Image.Image, where: np.ndarray | None = None) -> float:
    """High-frequency energy: mean |Laplacian| of luminance (optionally inside a boolean mask)."""
    lap = np.abs(ndimage.laplace(_luma(img)))
    return float(lap[where].mean() if where is not None else lap.mean())


def _blockiness(img: Image.Image) -> float:
    """Mean |horizontal step| across 8x8 block borders over that inside blocks (1 = no blocking)."""
    d = np.abs(np.diff(_luma(img), axis=1))
    border = (np.arange(d.shape[1]) % 8) == 7
    return float(d[:, border].mean() / d[:, ~border].mean())


def _cast(img: Image.Image) -> float:
    """Largest distance of a channel's mean from the luminance mean (0 for a neutral image)."""
    a = F._arr(img)
    return float(np.abs(a.reshape(-1, 3).mean(0) - (a @ F.LUMA).mean()).max())


def _clipped(img: Image.Image) -> float:
    return float((_luma(img) > 0.98).mean())


# family -> (measure, direction): the measure must move that way from the original
DIRECTION = {
    "defocus": (_hf, -1), "motion": (_hf, -1), "noise": (_hf, +1),
    "underexposure": (lambda im: float(_luma(im).mean()), -1),
    "overexposure": (lambda im: float(_luma(im).mean()) + _clipped(im), +1),
    "haze": (lambda im: float(_luma(im).std()), -1),
    "jpeg": (_blockiness, +1), "colour_cast": (_cast, +1),
}
CASES = [(fam, impl) for fam in F.FAULT_KINDS for impl in F.implementations(fam)]


def test_every_family_has_several_implementations() -> None:
    for fam in F.FAULT_KINDS:
        if fam not in ("tilt", "crop"):
            assert len(F.FAMILIES[fam]) >= 3, fam
    assert tuple(F.FAMILIES) == F.FAULT_KINDS


@pytest.mark.parametrize(("family", "impl"), [c for c in CASES if c[0] in DIRECTION])
def test_fault_moves_image_in_expected_direction(family: str, impl: str) -> None:
    measure, sign = DIRECTION[family]
    img = _photo(neutral=family == "colour_cast")
    base = measure(img)
    mild = measure(F.apply_fault(img, family, np.random.default_rng(3), 0.0, impl).image)
    strong = measure(F.apply_fault(img, family, np.random.default_rng(3), 1.0, impl).image)
    # Relative margins: a fault at the mildest severity is still a clear change.
    margin = {"jpeg": 0.1, "colour_cast": 0.02}.get(family)
    if margin is not None:  # absolute: these measures start near 1 (blockiness) or 0 (cast)
        assert sign * (mild - base) > margin, (base, mild)
    else:
        assert sign * (mild - base) > 0.1 * abs(base), (base, mild)
    assert sign * (strong - mild) > 0, (mild, strong)  # stronger with severity


@pytest.mark.parametrize("family", ["tilt", "crop"])
def test_framing_faults_keep_size_and_change_content(family: str) -> None:
    img = _photo()
    out = F.apply_fault(img, family, np.random.default_rng(0), 0.0).image
    assert out.size == img.size
    assert np.abs(F._arr(out) - F._arr(img)).mean() > 0.02


def test_deterministic_per_seed_and_varied_across_seeds() -> None:
    img = _photo()
    copies = [F.make_fault(img, np.random.default_rng(seed)) for seed in range(12)]
    again = [F.make_fault(img, np.random.default_rng(seed)) for seed in range(12)]
    for a, b in zip(copies, again):
        assert a.labels == b.labels and a.recipe == b.recipe
        assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert len({c.recipe for c in copies}) == len(copies)
    assert len({c.recipe[0].split(":")[0] for c in copies}) >= 6  # many (family, implementation)


def test_labels_name_the_families_applied() -> None:
    img = _photo()
    for seed in range(15):
        copy = F.make_fault(img, np.random.default_rng(seed), combine=(0.2, 0.4, 0.4))
        assert copy.labels and set(copy.labels) <= set(F.FAULT_KINDS)
        assert list(copy.labels) == sorted(copy.labels, key=F.FAULT_KINDS.index)
        assert sorted(r.split(".")[0] for r in copy.recipe) == sorted(copy.labels)
        assert copy.label_vector().sum() == len(copy.labels)
        assert not any(pair <= set(copy.labels) for pair in F._EXCLUSIVE)
    three = F.make_fault(img, np.random.default_rng(0), combine=(0, 0, 1))
    assert len(three.labels) == 3
    only = F.make_fault(img, np.random.default_rng(0), families=("jpeg",))
    assert only.labels == ("jpeg",) and only.label_vector()[F.FAULT_KINDS.index("jpeg")] == 1


def test_without_albumentations_its_implementations_are_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(F, "_has_albumentations", lambda: False)
    for fam in F.FAULT_KINDS:
        names = F.implementations(fam)
        assert names and not any(F.FAMILIES[fam][n][1] for n in names)
    assert F.make_fault(_photo(), np.random.default_rng(1)).labels


def test_shallow_dof_keeps_subject_sharp_and_blurs_background() -> None:
    img = _photo()
    pos = F.make_positive(img, np.random.default_rng(5), "shallow_dof")
    assert pos.labels == () and pos.label_vector().sum() == 0 and pos.image.size == img.size
    inside, outside = pos.mask > 0.995, pos.mask < 0.005
    assert inside.mean() > 0.03 and outside.mean() > 0.3
    assert _hf(pos.image, inside) > 0.95 * _hf(img, inside)
    assert _hf(pos.image, outside) < 0.5 * _hf(img, outside)


@pytest.mark.parametrize(("kind", "sign"), [("low_key", -1), ("high_key", +1)])
def test_low_and_high_key_keep_the_subject_exposure(kind: str, sign: int) -> None:
    img = _photo()
    pos = F.make_positive(img, np.random.default_rng(2), kind)
    assert pos.labels == ()
    inside, outside = pos.mask > 0.995, pos.mask < 0.005
    before, after = _luma(img), _luma(pos.image)
    assert abs(after[inside].mean() - before[inside].mean()) < 0.01
    assert sign * (after[outside].mean() - before[outside].mean()) > 0.1


def test_toned_positive_splits_shadows_and_highlights_toward_opposite_hues() -> None:
    img = _photo(neutral=True)
    pos = F.make_positive(img, np.random.default_rng(4), "toned")
    assert pos.labels == () and pos.recipe[0].startswith("positive.toned")
    a, b = F._arr(img), F._arr(pos.image)
    chroma = (b - b.mean(-1, keepdims=True)) - (a - a.mean(-1, keepdims=True))
    luma = _luma(img)
    dark, bright = chroma[luma < np.quantile(luma, 0.2)].mean(0), chroma[luma > np.quantile(luma, 0.8)].mean(0)
    assert np.linalg.norm(dark) > 0.01 and np.linalg.norm(bright) > 0.01
    assert float(dark @ bright) < 0  # opposite hues: a grade, not a cast that shifts everything one way
    assert abs(_luma(pos.image).mean() - luma.mean()) < 0.03 and _hf(pos.image) > 0.9 * _hf(img)


@pytest.mark.parametrize("seed", range(6))  # both the whole-frame and the one-hue-band form
def test_vivid_positive_raises_colour_but_keeps_grey_hue_and_luminance(seed: int) -> None:
    a = F._arr(_photo())
    a[:40, :60] = 0.5  # a grey card
    img = F._img(a)
    pos = F.make_positive(img, np.random.default_rng(seed), "vivid")
    assert pos.labels == () and pos.recipe[0].startswith("positive.vivid")
    b = F._arr(pos.image)
    assert np.abs(b[:40, :60] - a[:40, :60]).max() <= 1 / 255  # neutral stays neutral: no cast
    da, db = a - (a @ F.LUMA)[..., None], b - (b @ F.LUMA)[..., None]
    chroma_a, chroma_b = np.abs(da).max(-1), np.abs(db).max(-1)
    coloured = chroma_a > 0.12
    assert (chroma_b[coloured] >= chroma_a[coloured] - 2 / 255).all()  # never less colourful
    assert (chroma_b[coloured] > 1.2 * chroma_a[coloured]).sum() >= 50  # and more, somewhere (a band: its hues)
    assert np.abs(_luma(pos.image) - _luma(img)).max() < 0.02  # luminance kept (no clipping)
    cos = (da * db).sum(-1)[coloured] / (np.linalg.norm(da, axis=-1) * np.linalg.norm(db, axis=-1))[coloured]
    assert cos.min() > 0.99  # hue kept: chroma scaled, not rotated


def test_opt_in_positives_are_drawn_only_when_asked() -> None:
    img = _photo()
    default = {F.make_positive(img, np.random.default_rng(i)).recipe[0].split(":")[0] for i in range(20)}
    assert default == {f"positive.{k}" for k in F.POSITIVE_KINDS}
    assert not {"toned", "vivid"} & set(F.POSITIVE_KINDS)
    asked = F.make_positive(img, np.random.default_rng(0), kinds=("toned",))
    assert asked.recipe[0].startswith("positive.toned")


def test_bad_arguments_are_refused() -> None:
    img = _photo()
    with pytest.raises(ValueError, match="family"):
        F.apply_fault(img, "fog", np.random.default_rng(0))
    with pytest.raises(ValueError, match="severity"):
        F.apply_fault(img, "noise", np.random.default_rng(0), 1.5)
    with pytest.raises(ValueError, match="positive"):
        F.make_positive(img, np.random.default_rng(0), "bokeh")
