"""Faces in a photo, and whether their eyes are open and they are in focus.

:func:`analyse` takes an RGB array and gives one :class:`Face` per face found. It runs three small
ONNX models shipped in ``weights/faces`` (sha256-checked, one ONNX Runtime session each per process,
opened on first use): YuNet (OpenCV Zoo, MIT) finds faces on a <= 640 px copy; MediaPipe's Face Mesh
and Iris models (Apache-2.0) place the eyelids on the full-size array. The verdicts and their
calibration are :mod:`aescore.faces.judge`'s. Needs onnxruntime, numpy and Pillow only (no OpenCV).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Face", "analyse"]


@dataclass(frozen=True)
class Face:
    """One face, in the pixels of the array given to :func:`analyse`.

    ``box``: left, top, right, bottom. ``confidence``: the detector's score (0-1). ``eyes``:
    ``"open"``, ``"closed"`` or ``"unknown"`` (too small, turned away, cut by the frame, behind dark
    glasses, a wink or a squint, or a low-confidence face). ``focus``: ``"sharp"``, ``"soft"`` or
    ``"unknown"``. ``eye_openness``: (subject's right, left) eyelid gap / eye width, when read
    (about 0.15-0.3 open; closed when both are under ``judge.EYE_CLOSED``). ``eye_span``: outer eye
    corner to outer eye corner, px. ``yaw``: head turn in degrees (0 frontal). ``softness``: the eye
    band's gradient energy left after a re-blur (about 0.25-0.6 sharp; soft above
    ``judge.FOCUS_SOFT``), when measured.
    """

    box: tuple[float, float, float, float]
    confidence: float
    eyes: str
    focus: str
    eye_openness: tuple[float, float] | None = None
    eye_span: float | None = None
    yaw: float | None = None
    softness: float | None = None


def analyse(rgb: np.ndarray) -> list[Face]:
    """Every face in ``rgb`` (uint8, H x W x 3; grey H x W and RGBA are accepted), strongest first.

    Detection runs on a copy of at most 640 px; landmarks, eyes and focus on ``rgb`` itself, so
    give it the size the faces should be judged at (the faces check gives a <= 1600 px copy).
    Raises :class:`~aescore.errors.WeightsError` when a model file is missing or tampered with.
    """
    from PIL import Image

    from aescore.faces import judge
    from aescore.faces.detect import detect
    from aescore.faces.landmarks import eye, face_mesh

    rgb = _as_rgb(rgb)
    height, width = rgb.shape[:2]
    detections = detect(rgb, min_score=judge.FACE_MIN_SCORE)
    if not detections:
        return []
    img = Image.fromarray(rgb)
    faces: list[Face] = []
    for det in detections:
        x0, y0, x1, y1 = (round(float(v), 1) for v in det.box)
        box = (x0, y0, x1, y1)
        # YuNet's eye centres are ~0.6-0.7 of the outer-corner span apart: skip the mesh for faces
        # plainly too small to judge (a crowd of tiny faces costs one detection pass, not 2 ms each).
        centres = float(np.linalg.norm(det.landmarks[1] - det.landmarks[0]))
        if det.score < judge.JUDGE_MIN_SCORE or centres < 0.5 * judge.MIN_EYE_SPAN:
            faces.append(Face(box, round(det.score, 3), "unknown", "unknown"))
            continue
        mesh = face_mesh(img, det)
        if not judge.judgeable(det, mesh):
            faces.append(Face(box, round(det.score, 3), "unknown", "unknown", None,
                              round(mesh.eye_span, 1), round(mesh.yaw, 1)))
            continue
        right, left = eye(img, mesh, right=True), eye(img, mesh, right=False)
        soft = judge.softness(img, mesh)
        faces.append(Face(
            box,
            round(det.score, 3),
            judge.eye_state(right, left, width, height),
            judge.focus_state(soft),
            (round(right.openness, 3), round(left.openness, 3)),
            round(mesh.eye_span, 1),
            round(mesh.yaw, 1),
            None if soft is None else round(soft, 3),
        ))
    return faces


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """``image`` as a C-contiguous uint8 H x W x 3 array (grey repeated, alpha dropped)."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    elif arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 image, got shape {arr.shape}")
    return np.ascontiguousarray(arr)
