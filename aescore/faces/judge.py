"""Verdicts on one face: are the eyes open or closed, is the face in focus. Never a guess: a face
the readings cannot settle is ``"unknown"``.

The thresholds below were calibrated by ``scripts/validate_faces.py --calibrate`` on one half of
its labelled data (Yale subjects with odd numbers, half of the ImageNet people photos by file-name
hash) and are reported on the other half; the script prints both.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from aescore.faces.detect import Detection
from aescore.faces.landmarks import (
    LEFT_EYE_CORNERS,
    RIGHT_EYE_CORNERS,
    Eye,
    Mesh,
    rotated_crop,
)

# -- which detections count, which are judged -------------------------------------------------------
#: A detection counts as a face from this YuNet score (the better of the plain and the mirror pass,
#: :mod:`aescore.faces.detect`). Lower, the count fills with dogs, statues and patterns; at 0.75 an
#: ImageNet sample still counts ~3-5 non-faces (mostly dogs) per 100 photos.
FACE_MIN_SCORE = 0.75
#: Verdicts only from this score. Calibrated as the lowest score at which no non-face detection got
#: a "closed" or "soft" verdict (animal faces read open or unknown); it may be raised on its own.
JUDGE_MIN_SCORE = 0.75
#: The Face Mesh's own face flag: below it the landmarks are not of a face.
MIN_PRESENCE = 0.5
#: Outer eye corner to outer eye corner, px of the analysed image: smaller faces are too few
#: pixels for the eyelid contours (their readings drift below ~20 px) and for focus.
MIN_EYE_SPAN = 24.0
#: Head turned further than this (degrees): the far eye is foreshortened or hidden, and the eye band
#: would take in background.
MAX_YAW = 40.0

# -- eyes --------------------------------------------------------------------------------------------
#: Both eyes' lid gap / eye width below this: closed (a blink). On the wider eye, Yale's "sleepy"
#: faces read 0.06-0.125 and open ones from 0.14 (a broad smile's squint can read 0.126).
EYE_CLOSED = 0.133
#: Both eyes at or above this: open. In between (a squint, one eye open and one shut as in a wink,
#: eyes looking down): unknown.
EYE_OPEN = 0.153
#: An eye whose white is not brighter than its iris by this much (see Eye.sclera) is hidden (dark
#: glasses, deep shadow): the model then still draws an open eye, so an "open" reading is not trusted.
MIN_SCLERA = 0.2

# -- focus -------------------------------------------------------------------------------------------
#: The eye band is judged with the face brought down (never up) to this eye span: the "face scale".
#: Judged finer, the natural softness of skin, JPEG and resampling in sharp big faces reads as blur.
FOCUS_SPAN = 64.0
#: Gaussian sigma (px at the face scale) of the re-blur the band is compared with.
REBLUR_SIGMA = 1.0
#: Softness (gradient energy kept after the re-blur) above this: soft; below FOCUS_SHARP: sharp;
#: unknown between. Sharp faces read 0.25-0.6, the same blurred by sigma 2 at the face scale 0.7-0.9.
FOCUS_SOFT = 0.65
FOCUS_SHARP = 0.6
#: Eye band flatter than this (grey-level std, 0-1): too dark or washed out to tell.
MIN_BAND_CONTRAST = 0.02


def judgeable(face: Detection, mesh: Mesh) -> bool:
    """Whether a face is confident, big and frontal enough for any verdict."""
    return (
        face.score >= JUDGE_MIN_SCORE
        and mesh.presence >= MIN_PRESENCE
        and mesh.eye_span >= MIN_EYE_SPAN
        and mesh.yaw <= MAX_YAW
    )


def _inside(points: np.ndarray, width: int, height: int, margin: float) -> bool:
    """Whether every point lies at least ``margin`` px inside the image."""
    return bool(
        np.all(points[:, 0] >= margin) and np.all(points[:, 0] <= width - margin)
        and np.all(points[:, 1] >= margin) and np.all(points[:, 1] <= height - margin)
    )


def eye_state(right: Eye, left: Eye, width: int, height: int) -> str:
    """``"open"``, ``"closed"`` or ``"unknown"`` from both eyes of a judgeable face in a
    ``width`` x ``height`` image.

    Closed only when both eyes read closed (a blink); open only when both read open and at least
    one shows the white of the eye; an eye cut by the frame, a wink, a squint in the dead band
    between the thresholds, or eyes behind dark glasses are unknown.
    """
    for one in (right, left):
        if not _inside(one.contour, width, height, 0.25 * one.width):
            return "unknown"
    wider, narrower = max(right.openness, left.openness), min(right.openness, left.openness)
    if wider < EYE_CLOSED:
        return "closed"
    if narrower >= EYE_OPEN:
        shown = [s for s in (right.sclera, left.sclera) if s is not None]
        return "open" if shown and max(shown) >= MIN_SCLERA else "unknown"
    return "unknown"


def softness(img: Image.Image, mesh: Mesh) -> float | None:
    """How soft the eye band is: the share of its gradient energy that survives a re-blur.

    The band (1.6 x the eye span wide, 0.6 x tall, rotated level) is cut at the face scale
    (:data:`FOCUS_SPAN`), and compared with itself blurred by :data:`REBLUR_SIGMA`: a sharp band
    loses most of its fine gradients to the re-blur (about 0.3-0.55 kept), an already blurred
    one loses little (0.7-0.9). It is a ratio of the face to itself, so contrast, skin and
    lighting cancel, and the background plays no part (a sharp face before a soft background
    reads sharp). None when the band leaves the image or is too flat to tell.
    """
    p_right, p_left = mesh.points[RIGHT_EYE_CORNERS[0], :2], mesh.points[LEFT_EYE_CORNERS[1], :2]
    span = float(np.linalg.norm(p_left - p_right))
    if span < 1.0:
        return None
    angle = math.atan2(float(p_left[1] - p_right[1]), float(p_left[0] - p_right[0]))
    centre = (p_right + p_left) / 2
    along = np.array([math.cos(angle), math.sin(angle)]) * 0.8 * span
    across = np.array([-math.sin(angle), math.cos(angle)]) * 0.3 * span
    corners = np.array([centre + sa * along + sb * across for sa in (-1, 1) for sb in (-1, 1)])
    if not _inside(corners, img.width, img.height, 0.0):
        return None  # a band cut by the frame would judge the frame's black edge
    scale = min(1.0, FOCUS_SPAN / span)
    side = 1.6 * span
    out = max(8, round(side * scale))
    crop = rotated_crop(img, float(centre[0]), float(centre[1]), side, angle, out)
    grey = np.asarray(crop.convert("L"), np.float64) / 255.0
    rows = max(4, round(out * 0.6 / 1.6))
    band = grey[(out - rows) // 2:(out - rows) // 2 + rows]
    if band.std() < MIN_BAND_CONTRAST:
        return None
    energy = _gradient_energy(band)
    if energy <= 1e-12:
        return None
    return _gradient_energy(gaussian_blur(band, REBLUR_SIGMA)) / energy


def focus_state(value: float | None) -> str:
    """``"sharp"``, ``"soft"`` or ``"unknown"`` from :func:`softness` (None: unknown)."""
    if value is None:
        return "unknown"
    if value > FOCUS_SOFT:
        return "soft"
    if value < FOCUS_SHARP:
        return "sharp"
    return "unknown"


def _gradient_energy(g: np.ndarray) -> float:
    """Mean squared central-difference gradient over the interior."""
    gx = g[1:-1, 2:] - g[1:-1, :-2]
    gy = g[2:, 1:-1] - g[:-2, 1:-1]
    return float(np.mean(gx * gx + gy * gy))


def gaussian_blur(g: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a 2-D array, edges mirrored (as scipy.ndimage's default)."""
    radius = max(1, int(4.0 * sigma + 0.5))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    padded = np.pad(g, radius, mode="symmetric")
    h, w = g.shape
    rows = sum(t * padded[:, k:k + w] for k, t in enumerate(taps))
    return sum(t * rows[k:k + h, :] for k, t in enumerate(taps))
