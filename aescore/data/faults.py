"""A fault generator meant to generalise: several independent implementations per fault family,
wide random parameters, combinations, and good photographs that are soft or dark on purpose.

:mod:`aescore.data.degrade` gives each fault one narrow, deterministic form; a network trained on it
learns that form (0.95 pairwise on its own held-out faults, 0.79 on independently coded faults on
real photographs, as issue 12 measured). Here every
family has several implementations (our own, in linear light or sRGB, and albumentations' where it
has one), each with a continuous severity ``s`` in [0, 1] spread over a wide parameter range, from
mild (meant as a flaw a photographer would still reject; not yet checked with people) to strong:

========================  ==========================================================================
label                     implementations (``FAMILIES``)
========================  ==========================================================================
defocus                   Gaussian (sRGB), disk point spread (linear light), albumentations Defocus
motion                    straight line at any angle, random shake path, albumentations MotionBlur
noise                     Gaussian RGB, Poisson shot + read noise, luminance + blotchy chroma,
                          ISO-like Bayer noise with demosaic-like softening, albumentations
                          GaussNoise / ISONoise
underexposure             linear gain, gamma curve, clipped shadows (black point), albumentations
                          brightness
overexposure              linear gain (clipped highlights), gain to blow a share of the pixels,
                          washed-out lift, albumentations brightness
haze                      light veil, flat contrast toward the mean, graded (distance) haze,
                          albumentations contrast
jpeg                      Pillow at quality 5-40 with 4:4:4 / 4:2:2 / 4:2:0 chroma, double
                          compression, albumentations (OpenCV) ImageCompression
colour_cast               white-balance gains on an opponent hue, colour temperature + tint,
                          albumentations RGBShift
tilt, crop                rotation of 2.5-12 degrees (cropped, no borders); a small off-centre crop
========================  ==========================================================================

:func:`make_fault` makes one copy with one family (or, at random, two or three combined, applied in
camera order: framing, optics, light, sensor, compression); its labels are the families applied,
in the fixed vocabulary :data:`FAULT_KINDS`. :func:`make_positive` makes good photographs that
are *not* faults: a sharp subject on a blurred background (shallow depth of field), and low-key /
high-key versions where the subject keeps its exposure and only the surroundings go dark or
bright (a globally darker or brighter copy stays a fault).

Everything is deterministic given the ``numpy`` generator; albumentations is seeded from it.
albumentations is optional (``aescore[faults]``): without it those implementations are left out.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image
from scipy import ndimage

# The sRGB transfer curve, float conversion and point-spread helpers of the original generator.
from aescore.data.degrade import _arr, _convolve, _disk_kernel, _img, _line_kernel, _to_linear, _to_srgb

from aescore.data.fault_kinds import FAULT_KINDS  # the one vocabulary, shared with the reasons head
from aescore.data.transforms import REC709_LUMA

# The positives the shipped default model trained on; the others of POSITIVES (``toned``, ``vivid``) are
# opt-in: ``make_positive(kinds=...)``, ``train_default_model.py --positives``.
POSITIVE_KINDS: tuple[str, ...] = ("shallow_dof", "low_key", "high_key")
REF_SHORTER = 375.0  # pixel-sized strengths are given at this shorter side and scaled with the image
LUMA = np.array(REC709_LUMA, np.float32)
# Camera order for combinations: framing, optics, light, sensor, compression.
_ORDER = ("tilt", "crop", "defocus", "motion", "underexposure", "overexposure", "haze", "colour_cast",
          "noise", "jpeg")
# Families that contradict each other are never combined.
_EXCLUSIVE = ({"underexposure", "overexposure"}, {"defocus", "motion"}, {"tilt", "crop"})

Array = np.ndarray  # float32 [H, W, 3] in [0, 1] (sRGB unless a name says linear)
Impl = Callable[[Array, float, np.random.Generator, float], Array]  # (a, s, rng, scale) -> a


@dataclass(frozen=True)
class FaultCopy:
    """A generated copy: the image, its fault labels (empty for a positive) and how it was made.

    ``recipe`` names each step as ``family.implementation`` with its severity, for provenance;
    ``mask`` is the sharp / well-exposed subject region of a positive (``[H, W]`` in [0, 1]).
    """

    image: Image.Image
    labels: tuple[str, ...]
    recipe: tuple[str, ...]
    mask: np.ndarray | None = None

    def label_vector(self) -> np.ndarray:
        """Multi-hot float32 vector over :data:`FAULT_KINDS`."""
        return np.array([k in self.labels for k in FAULT_KINDS], np.float32)


# ----------------------------------------------------------------------------- helpers


def _lerp(lo: float, hi: float, s: float) -> float:
    return lo + (hi - lo) * s


def _albu(a: Array, transform: object, rng: np.random.Generator) -> Array:
    """Run an albumentations transform (always applied) on ``a``, seeded from ``rng``."""
    import albumentations as A

    seed = int(rng.integers(2**31 - 1))
    u8 = (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)
    out = A.Compose([transform], seed=seed)(image=u8)["image"]
    return out.astype(np.float32) / 255


def _has_albumentations() -> bool:
    try:
        import albumentations  # noqa: F401
    except ImportError:
        return False
    return True


def _linear(fn: Callable[[Array], Array], a: Array) -> Array:
    """Apply ``fn`` in linear light (where lenses, sensors and white balance act)."""
    return _to_srgb(fn(_to_linear(a)))


# ----------------------------------------------------------------------------- blur


def defocus_gaussian(a: Array, s: float, rng: np.random.Generator, scale: float) -> Array:
    sigma = _lerp(1.0, 4.5, s) * scale
    return ndimage.gaussian_filter(a, (sigma, sigma, 0), mode="reflect")


def defocus_disk(a: Array, s: float, rng: np.random.Generator, scale: float) -> Array:
    return _linear(lambda x: _convolve(x, _disk_kernel(_lerp(1.8, 8.0, s) * scale)), a)


def defocus_albu(a: Array, s: float, rng: np.random.Generator, scale: float) -> Array:
    import albumentations as A

    r = max(2, round(_lerp(2.0, 8.0, s) * scale))
    return _albu(a, A.Defocus(radius=(r, r), alias_blur=(0.1, 0.5), p=1), rng)


def motion_line(a: Array, s: float, rng: np.random.Generator, scale: float) -> Array:
    kernel = _line_kernel(_lerp(6.0, 32.0, s) * scale, float(rng.uniform(0, np.pi)))
    return _linear(lambda x: _convolve(x, kernel), a)


def shake_kernel(length: float, rng: np.random.Generator) -> np.ndarray:
    """A hand-shake point spread: a smooth random path of about ``length`` px, splatted bilinearly."""
    n = max(16, int(length * 4))
    heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.25, n))  # slowly turning
    speed = np.abs(1 + 0.5 * rng.standard_normal(n))  # uneven speed: some points get more light
    steps = np.stack([np.cos(heading), np.sin(heading)], 1) * speed[:, None]
    path = np.cumsum(steps, 0)
    path = (path - path.mean(0)) * (length / max(np.ptp(path, 0).max(), 1e-6))
    r = int(np.ceil(np.abs(path).max())) + 2
    k = np.zeros((2 * r + 1, 2 * r + 1), np.float32)
    x, y = path[:, 0] + r, path[:, 1] + r
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0).astype(np.float32), (y - y0).astype(np.float32)
    for dx, dy, wgt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        np.add.at(k, (y0 + dy, x0 + dx), wgt)
    return k / k.sum()


def motion_shake(a: Array, s: float, rng: np.random.Generator, scale: float) -> Array:
    kernel = shake_kernel(_lerp(6.0, 30.0, s) * scale, rng)
    return _linear(lambda x: _convolve(x, kernel), a)


def motion_albu(a: Array, s: float, rng: np.random.Generator, scale: float) -> Array:
    import albumentations as A

    k = 2 * max(2, round(_lerp(3.0, 16.0, s) * scale)) + 1  # odd kernel size, 5 .. 33 px at 375
    return _albu(a, A.MotionBlur(blur_limit=(k, k), angle_range=(0, 360), allow_shifted=False, p=1), rng)


# ----------------------------------------------------------------------------- noise


def noise_gaussian(a: Array, s: float, rng: np.random.Generator, scale: float) -> Array:
    return a + rng.normal(0, _lerp(0.025, 0.14, s), a.shape).astype(np.float32)


def noise_shot(a: Array, s: float, rng: np.random.Generator, scale: float) -> Array:
    """Photon (Poisson) noise at a full-scale count from ~1,500 (mild) down to ~25, plus read noise."""
    full = 10 ** _lerp(3.2, 1.4, s)
    lin = _to_linear(np.clip(a, 0, 1))
    shot = rng.poisson(lin * full).astype(np.float32) / np.float32(full)
    read = rng.normal(0, _lerp(0.002, 0.01, s), a.shape).astype(np.float32)
    return _to_srgb(shot + read)


def noise_luma_chroma(a: Array, s: float, rng: np.random.Generator, scale: float) -> Array:
    """Luminance grain plus blotchy chroma noise (drawn at 1/2-1/4 resolution), in random proportion."""
    h, w, _ = a.shape
    sigma = _lerp(0.025, 0.13, s)
    chroma_share = rng.uniform(0.2, 0.8)
    luma = rng.normal(0, sigma * (1 - chroma_share) * 1.4, (h, w, 1)).astype(np.float32)
    f = int(rng.integers(2, 5))
    small = rng.normal(0, sigma * chroma_share * 1.6, (-(-h // f), -(-w // f), 3)).astype(np.float32)
    small -= small.mean(2, keepdims=True)  # chroma only: zero mean across channels
    chroma = ndimage.zoom(small, (f, f, 1), order=1)[:h, :w]
    return a + luma + chroma


def noise_iso(a: Array, s: float, rng: np.random.Generator, scale: float) -> Array:
    """High-ISO sensor noise: signal-dependent noise per Bayer site, then demosaic-like softening
    (each channel's noise interpolated from its sites) and a touch of in-camera noise reduction."""
    h, w, _ = a.shape
    gain = _lerp(0.03, 0.25, s)
    lin = _to_linear(np.clip(a, 0, 1))
    sd = np.sqrt(gain * lin * 0.25 + (gain * 0.3) ** 2)
    raw = rng.standard_normal((h, w, 3)).astype(np.float32) * sd
    # Bayer: R at (0,0), G at (0,1)/(1,0), B at (1,1); a channel's noise exists only at its sites
    # and demosaicing interpolates it, which correlates neighbouring pixels.
    sites = np.zeros((h, w, 3), np.float32)
    sites[0::2, 0::2, 0] = 1
    sites[0::2, 1::2, 1] = sites[1::2, 0::2, 1] = 1
    sites[1::2, 1::2, 2] = 1
    spread = ndimage.uniform_filter(raw * sites, (3, 3, 1)) / np.maximum(ndimage.uniform_filter(sites, (3, 3, 1)), 1e-6)
    soft = ndimage.gaussian_filter(lin, (0.6, 0.6, 0))  # noise reduction also softens detail
    return _to_srgb(soft + spread)


def noise_albu_gauss(a: Array, s: float, rng: np.random.Generator, scale: float) -> Array:
    import albumentations as A

    sd = _lerp(0.03, 0.15, s)
    return _albu(a, A.GaussNoise(std_range=(sd, sd), per_channel=bool(rng.random() < 0.7), p=1), rng)


def noise_albu_iso(a: Array, s: float, rng: np.random.Generator, scale: float) -> Array:
    import albumentations as A

    i = _lerp(0.2, 0.7, s)
    return _albu(a, A.ISONoise(color_shift=(0.02, 0.08), intensity=(i, i), p=1), rng)


# ----------------------------------------------------------------------------- exposure


def under_gain(a: Array, s: float, rng: np.random.Generator, scale: float) -> Array:
    ev = _lerp(1.0, 3.4, s)
    return _linear(lambda x: x * np.float32(2.0**-ev), a)


def under_gamma(a: Array, s: float, rng: np.random.Generator, scale: float) -> Array:
    return np.clip(a, 0, 1) ** np.float32(_lerp(1.5, 3.2, s))


def under_crushed(a: Array, s: float, rng: np.random.Generator, scale: float) -> Array:
    """A dark tone curve: a raised black point clips the shadows, then a linear darkening."""
    black = _lerp(0.08, 0.3, s)
    crushed = np.clip((a - black) / (1 - black), 0, 1)
    return _linear(lambda x: x * np.float32(2.0 ** -_lerp(0.5, 1.5, s)), crushed)


def under_albu(a: Array, s: float, rng: np.random.Generator, scale: float) -> Array:
    import albumentations as A

    b = -_lerp(0.08, 0.3, s)  # a fraction of full scale subtracted: shadows clip first
    return _albu(a, A.RandomBrightnessContrast(brightness_limit=(b, b), contrast_limit=(0, 0), p=1), rng)


def over_gain(a: Array, s: float, rng: np.random.Generator, scale: float) -> Array:
    ev = _lerp(0.9, 3.0, s)
    return _linear(lambda x: x * np.float32(2.0**ev), a)


def over_blow(a: Array, s: float, rng: np.random.Generator, scale: float) -> Array:
    """A gain that blows a given share (8-50 %) of the pixels to white, whatever the photo's brightness."""
    share = _lerp(0.08, 0.5, s)
    lin = _to_linear(np.clip(a, 0, 1))
    q = float(np.quantile(lin @ LUMA, 1 - share))
    gain = float(np.clip(1 / max(q, 1e-6), 2.0**0.5, 2.0**4))
    return _to_srgb(lin * np.float32(gain))


def over_washed(a: Array, s: float, rng: np.random.Generator, scale: float) -> Array:
    """A washed-out lift: shadows raised by a gamma below 1, highlights pushed past white."""
    lifted = np.clip(a, 0, 1) ** np.float32(1 / _lerp(1.5, 3.0, s))
    return lifted * np.float32(_lerp(1.05, 1.35, s))


def over_albu(a: Array, s: float, rng: np.random.Generator, scale: float) -> Array:
    import albumentations as A

    b = _lerp(0.25, 0.55, s)
    return _albu(a, A.RandomBrightnessContrast(brightness_limit=(b, b), contrast_limit=(0, 0), p=1), rng)


# ----------------------------------------------------------------------------- haze, colour


def haze_veil(a: Array, s: float, rng: np.random.Generator, scale: float) -> Array:
    alpha = _lerp(0.25, 0.7, s)
    veil = np.float32(rng.uniform(0.6, 0.92)) + rng.uniform(-0.03, 0.03, 3).astype(np.float32)
    return (1 - alpha) * a + alpha * veil


def haze_flat(a: Array, s: float, rng: np.random.Generator, scale: float) -> Array:
    alpha = _lerp(0.35, 0.75, s)
    return (1 - alpha) * a + alpha * a.reshape(-1, 3).mean(0)


def haze_graded(a: Array, s: float, rng: np.random.Generator, scale: float) -> Array:
    """Haze that thickens toward the top of the frame, as distance does in a landscape."""
    h = a.shape[0]
    top, bottom = _lerp(0.45, 0.85, s), _lerp(0.1, 0.4, s) * rng.uniform(0.5, 1)
    alpha = np.linspace(top, bottom, h, dtype=np.float32)[:, None, None]
    veil = np.float32(rng.uniform(0.7, 0.92))
    return (1 - alpha) * a + alpha * veil


def haze_albu(a: Array, s: float, rng: np.random.Generator, scale: float) -> Array:
    import albumentations as A

    # albumentations scales contrast about 0, so a brightness offset makes it a lifted, flat veil
    c = -_lerp(0.35, 0.7, s)
    b = -c * rng.uniform(0.4, 0.8)
    return _albu(a, A.RandomBrightnessContrast(brightness_limit=(b, b), contrast_limit=(c, c), p=1), rng)


def _opponent(phi: float) -> np.ndarray:
    """A unit direction in the opponent-colour plane (red-cyan, green-magenta), max |component| = 1."""
    d = np.cos(phi) * np.array([1.0, -0.5, -0.5]) + np.sin(phi) * np.array([0.0, 0.866, -0.866])
    return d / np.abs(d).max()


def cast_wb(a: Array, s: float, rng: np.random.Generator, scale: float) -> Array:
    gains = 1 + _lerp(0.2, 0.85, s) * _opponent(rng.uniform(0, 2 * np.pi))
    gains = (gains / (gains @ LUMA)).astype(np.float32)  # luminance kept
    return _linear(lambda x: x * gains, a)


def cast_temperature(a: Array, s: float, rng: np.random.Generator, scale: float) -> Array:
    """A wrong colour temperature (warm or cool: red against blue) with a green-magenta tint."""
    t = _lerp(0.25, 0.8, s) * rng.choice([-1.0, 1.0])
    tint = rng.uniform(-0.3, 0.3) * _lerp(0.2, 0.6, s)
    gains = np.array([1 + t, 1 + tint, 1 - t], np.float32).clip(0.1)
    gains /= gains @ LUMA
    return _linear(lambda x: x * gains, a)


def cast_albu(a: Array, s: float, rng: np.random.Generator, scale: float) -> Array:
    import albumentations as A

    d = _opponent(rng.uniform(0, 2 * np.pi)) * _lerp(18, 60, s)
    r, g, b = (float(v) for v in d)
    return _albu(a, A.RGBShift(r_shift_limit=(r, r), g_shift_limit=(g, g), b_shift_limit=(b, b), p=1), rng)


# ----------------------------------------------------------------------------- JPEG


def _jpeg_round_trip(a: Array, quality: int, subsampling: int) -> Array:
    buf = io.BytesIO()
    _img(a).save(buf, format="JPEG", quality=int(quality), subsampling=int(subsampling))
    buf.seek(0)
    with Image.open(buf) as out:
        return _arr(out)


def jpeg_pil(a: Array, s: float, rng: np.random.Generator, scale: float) -> Array:
    """Pillow (libjpeg) at quality 40 (mild) to 5, chroma 4:4:4, 4:2:2 or 4:2:0."""
    return _jpeg_round_trip(a, round(_lerp(40, 5, s)), int(rng.integers(0, 3)))


def jpeg_double(a: Array, s: float, rng: np.random.Generator, scale: float) -> Array:
    """Saved twice: once at a moderate quality (30-70), then at 40-5 (re-shared photos)."""
    first = _jpeg_round_trip(a, int(rng.integers(30, 71)), int(rng.integers(0, 3)))
    return _jpeg_round_trip(first, round(_lerp(40, 5, s)), int(rng.integers(0, 3)))


def jpeg_albu(a: Array, s: float, rng: np.random.Generator, scale: float) -> Array:
    import albumentations as A

    q = round(_lerp(40, 5, s))
    return _albu(a, A.ImageCompression(compression_type="jpeg", quality_range=(q, q), p=1), rng)


# ----------------------------------------------------------------------------- framing


def tilt_rotate(a: Array, s: float, rng: np.random.Generator, scale: float) -> Array:
    """A crooked horizon: rotate 2.5-12 degrees, keep the largest centred box of the same aspect
    ratio that holds no border, resize it back (no black corners)."""
    img = _img(a)
    deg = _lerp(2.5, 12.0, s) * rng.choice([-1.0, 1.0])
    w, h = img.size
    c, si = abs(np.cos(np.radians(deg))), abs(np.sin(np.radians(deg)))
    k = min(w / (w * c + h * si), h / (w * si + h * c))
    cw, ch = int(k * w) - 2, int(k * h) - 2
    left, top = (w - cw) // 2, (h - ch) // 2
    rotated = img.rotate(float(deg), resample=Image.Resampling.BICUBIC).crop((left, top, left + cw, top + ch))
    return _arr(rotated.resize((w, h), Image.Resampling.LANCZOS))


def crop_off_centre(a: Array, s: float, rng: np.random.Generator, scale: float) -> Array:
    """A poor crop: 55 % (mild) to 28 % of the area, against an edge or corner, upscaled back."""
    img = _img(a)
    area = _lerp(0.55, 0.28, s)
    w, h = img.size
    cw, ch = max(1, round(w * np.sqrt(area))), max(1, round(h * np.sqrt(area)))
    anchors = [(x, y) for x in (0.0, 0.5, 1.0) for y in (0.0, 0.5, 1.0) if (x, y) != (0.5, 0.5)]
    fx, fy = anchors[int(rng.integers(len(anchors)))]
    left, top = round(fx * (w - cw)), round(fy * (h - ch))
    return _arr(img.crop((left, top, left + cw, top + ch)).resize((w, h), Image.Resampling.LANCZOS))


# ----------------------------------------------------------------------------- registry

# family -> {implementation name: (function, needs albumentations)}
FAMILIES: dict[str, dict[str, tuple[Impl, bool]]] = {
    "defocus": {"gaussian": (defocus_gaussian, False), "disk": (defocus_disk, False), "albu": (defocus_albu, True)},
    "motion": {"line": (motion_line, False), "shake": (motion_shake, False), "albu": (motion_albu, True)},
    "noise": {"gaussian": (noise_gaussian, False), "shot": (noise_shot, False), "luma_chroma": (noise_luma_chroma, False),
              "iso": (noise_iso, False), "albu_gauss": (noise_albu_gauss, True), "albu_iso": (noise_albu_iso, True)},
    "underexposure": {"gain": (under_gain, False), "gamma": (under_gamma, False), "crushed": (under_crushed, False),
                      "albu": (under_albu, True)},
    "overexposure": {"gain": (over_gain, False), "blow": (over_blow, False), "washed": (over_washed, False),
                     "albu": (over_albu, True)},
    "haze": {"veil": (haze_veil, False), "flat": (haze_flat, False), "graded": (haze_graded, False), "albu": (haze_albu, True)},
    "jpeg": {"pil": (jpeg_pil, False), "double": (jpeg_double, False), "albu": (jpeg_albu, True)},
    "colour_cast": {"wb": (cast_wb, False), "temperature": (cast_temperature, False), "albu": (cast_albu, True)},
    "tilt": {"rotate": (tilt_rotate, False)},
    "crop": {"off_centre": (crop_off_centre, False)},
}
assert tuple(FAMILIES) == FAULT_KINDS


def implementations(family: str) -> list[str]:
    """The implementations of ``family`` usable here (albumentations' only where it is installed)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown fault family {family!r}; available: {', '.join(FAULT_KINDS)}")
    albu = _has_albumentations()
    return [name for name, (_, needs) in FAMILIES[family].items() if albu or not needs]


def apply_fault(img: Image.Image, family: str, rng: np.random.Generator, severity: float | None = None,
                impl: str | None = None) -> FaultCopy:
    """One fault of ``family``: implementation ``impl`` (default: one at random) at ``severity``
    in [0, 1] (default: uniform). The copy has the input's size and the label ``family``."""
    names = implementations(family)
    name = impl if impl is not None else names[int(rng.integers(len(names)))]
    if name not in FAMILIES[family]:
        raise ValueError(f"unknown implementation {name!r} of {family}; available: {', '.join(FAMILIES[family])}")
    s = float(rng.uniform(0, 1)) if severity is None else float(severity)
    if not 0 <= s <= 1:
        raise ValueError(f"severity must be in [0, 1], got {s}")
    a = _arr(img)
    out = FAMILIES[family][name][0](a, s, rng, min(img.size) / REF_SHORTER)
    return FaultCopy(_img(out), (family,), (f"{family}.{name}:{s:.2f}",))


def make_fault(img: Image.Image, rng: np.random.Generator, families: tuple[str, ...] = FAULT_KINDS,
               combine: tuple[float, float, float] = (0.7, 0.22, 0.08)) -> FaultCopy:
    """A faulty copy: one family (probability ``combine[0]``), two or three combined, each with a
    random implementation and severity, applied in camera order; labels = the families applied."""
    n = 1 + int(rng.choice(3, p=np.asarray(combine) / sum(combine)))
    chosen: list[str] = []
    for family in rng.permutation(list(families)):
        if len(chosen) == n:
            break
        if any(family in pair and (pair - {family}) & set(chosen) for pair in _EXCLUSIVE):
            continue
        chosen.append(str(family))
    labels: list[str] = []
    recipe: list[str] = []
    for family in sorted(chosen, key=_ORDER.index):
        step = apply_fault(img, family, rng)
        img = step.image
        labels.append(family)
        recipe += step.recipe
    return FaultCopy(img, tuple(sorted(labels, key=FAULT_KINDS.index)), tuple(recipe))


# ----------------------------------------------------------------------------- positives


def subject_mask(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A feathered ellipse ``[H, W]`` in [0, 1]: the subject (1) somewhere near the centre, covering
    roughly 10-35 % of the frame; the feather is 3-6 % of the shorter side."""
    cy, cx = h * rng.uniform(0.3, 0.7), w * rng.uniform(0.3, 0.7)
    ry, rx = h * rng.uniform(0.2, 0.35), w * rng.uniform(0.18, 0.33)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    inside = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).astype(np.float32)
    return np.clip(ndimage.gaussian_filter(inside, min(h, w) * rng.uniform(0.03, 0.06)), 0, 1)


def shallow_dof(img: Image.Image, rng: np.random.Generator) -> FaultCopy:
    """Shallow depth of field: the subject region stays sharp, the rest is defocused by a disk
    (bokeh) of 4-12 px at 375 px in linear light, blended through the feathered mask."""
    a = _arr(img)
    mask = subject_mask(a.shape[0], a.shape[1], rng)
    radius = rng.uniform(4.0, 12.0) * min(img.size) / REF_SHORTER
    blurred = _linear(lambda x: _convolve(x, _disk_kernel(radius)), a)
    out = mask[..., None] * a + (1 - mask[..., None]) * blurred
    return FaultCopy(_img(out), (), (f"positive.shallow_dof:r={radius:.1f}",), mask)


def low_key(img: Image.Image, rng: np.random.Generator) -> FaultCopy:
    """Low key: the surroundings fall 1.5-3.5 EV darker (as with a spot-lit subject), the subject
    keeps its exposure, so highlights and midtones of the subject are unchanged."""
    a = _arr(img)
    mask = subject_mask(a.shape[0], a.shape[1], rng)[..., None]
    ev = rng.uniform(1.5, 3.5)
    light = mask + (1 - mask) * np.float32(2.0**-ev)
    return FaultCopy(_img(_linear(lambda x: x * light, a)), (), (f"positive.low_key:ev={ev:.1f}",), mask[..., 0])


def high_key(img: Image.Image, rng: np.random.Generator) -> FaultCopy:
    """High key: the surroundings blend toward a bright, nearly white backdrop (50-85 %), the
    subject keeps its exposure; nothing of the subject is blown."""
    a = _arr(img)
    mask = subject_mask(a.shape[0], a.shape[1], rng)[..., None]
    alpha = rng.uniform(0.5, 0.85)
    white = np.float32(rng.uniform(0.9, 0.97))
    out = a * mask + (1 - mask) * ((1 - alpha) * a + alpha * white)
    return FaultCopy(_img(out), (), (f"positive.high_key:a={alpha:.2f}",), mask[..., 0])


def toned(img: Image.Image, rng: np.random.Generator) -> FaultCopy:
    """Colour graded on purpose: split toning (shadows pushed toward a random hue by 4-10 % of
    full scale, highlights toward the opposite hue, so the frame as a whole keeps its white balance:
    unlike a ``colour_cast``, which shifts everything one way) and a saturation boost of 1-1.35x."""
    a = _arr(img)
    theta = rng.uniform(0, 2 * np.pi)
    hue = np.cos(theta - np.array([0, 2 * np.pi / 3, 4 * np.pi / 3], np.float32)).astype(np.float32)  # zero mean
    luma = (a @ LUMA)[..., None]
    strength = np.float32(rng.uniform(0.04, 0.10))
    out = a + strength * (1 - 2 * luma) * hue  # shadows +hue, highlights -hue, mid-grey unchanged
    sat = np.float32(rng.uniform(1.0, 1.35))
    out = luma + sat * (out - luma)
    return FaultCopy(_img(np.clip(out, 0, 1)), (), (f"positive.toned:k={strength:.2f},sat={sat:.2f}",))


def vivid(img: Image.Image, rng: np.random.Generator) -> FaultCopy:
    """Strong natural colour (issue 28: foliage, flowers, a sunset sky): the chroma of the whole
    frame (half the time) or of one hue band 60-120 degrees wide (a photographer's HSL slider:
    one colour dominates, the others stay) raised 1.4-2.2x around each pixel's luminance. Hue and
    luminance are kept; nearly neutral pixels (chroma below 0.04, fading in up to 0.16) stay as
    they are, so grey stays grey (unlike a ``colour_cast``, which tints it); no channel clips:
    each pixel's gain stops where a channel would leave [0, 1]."""
    a = _arr(img)
    luma = (a @ LUMA)[..., None]
    d = a - luma
    k = rng.uniform(1.4, 2.2)
    weight = np.clip((d.max(-1) - d.min(-1) - 0.04) / 0.12, 0, 1).astype(np.float32)
    band = rng.random() < 0.5
    if band:  # hue in opponent coordinates; a feathered band around a random centre
        hue = np.arctan2(d @ np.array([0.0, 0.866, -0.866], np.float32), d @ np.array([1.0, -0.5, -0.5], np.float32))
        centre, width = rng.uniform(-np.pi, np.pi), np.radians(rng.uniform(60, 120))
        off = np.abs(np.angle(np.exp(1j * (hue - centre))))
        weight *= np.clip(1.5 - off / (width / 2), 0, 1).astype(np.float32)  # 1 inside, fading over half a band
    # The largest chroma gain that keeps every channel in [0, 1] at this pixel's luminance.
    with np.errstate(divide="ignore", invalid="ignore"):
        room = np.where(d > 0, (1 - luma) / d, np.where(d < 0, -luma / d, np.inf)).min(-1)
    gain = np.minimum(1 + (k - 1) * weight, np.maximum(room, 1.0)).astype(np.float32)[..., None]
    out = luma + gain * d
    how = f"band={np.degrees(centre):.0f}" if band else "all"
    return FaultCopy(_img(np.clip(out, 0, 1)), (), (f"positive.vivid:k={k:.2f},{how}",))


POSITIVES: dict[str, Callable[[Image.Image, np.random.Generator], FaultCopy]] = {
    "shallow_dof": shallow_dof, "low_key": low_key, "high_key": high_key, "toned": toned, "vivid": vivid,
}


def make_positive(img: Image.Image, rng: np.random.Generator, kind: str | None = None,
                  kinds: tuple[str, ...] = POSITIVE_KINDS) -> FaultCopy:
    """A good photograph that is soft, dark or graded on purpose (labels empty): ``kind``, or one
    drawn at random from ``kinds`` (the default model's :data:`POSITIVE_KINDS`)."""
    kind = kind or kinds[int(rng.integers(len(kinds)))]
    if kind not in POSITIVES:
        raise ValueError(f"unknown positive kind {kind!r}; available: {', '.join(POSITIVES)}")
    return POSITIVES[kind](img.convert("RGB"), rng)
