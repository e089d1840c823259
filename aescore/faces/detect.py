"""Face detection with YuNet 2023mar: the network on a <= 640 px copy and on its mirror image, its
outputs decoded in numpy.

YuNet is anchor-free: for each stride s in (8, 16, 32) and each cell (row r, column c) of the
s-strided grid it predicts a class and an objectness probability (the face score is their
geometric mean, as OpenCV's ``FaceDetectorYN`` computes it), a box centre offset and log-size in
units of s, and five keypoints in units of s. The decode below is that scheme; OpenCV is not used.

Why the mirror pass (``mirror=True``): YuNet's score for a face turned away, half covered or in
profile often differs a lot between a photo and its mirror image (0.38 against 0.64, 0.48 against
0.77 on faces of the labelled ImageNet photos that the single pass missed), so the candidates of
both passes are pooled before non-maximum suppression, each face keeping the better of its two
readings. It doubles the detector's cost (the landmarks still run once per face found); the
thresholds of :mod:`aescore.faces.judge` were calibrated with it (``scripts/validate_faces.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from aescore.faces.models import DETECTOR, session

#: The network's input side (the published model has a fixed 640 x 640 input).
INPUT_SIDE = 640
STRIDES = (8, 16, 32)
#: Overlap above which the weaker of two boxes is dropped (OpenCV's default for YuNet is 0.3).
NMS_IOU = 0.3


@dataclass(frozen=True)
class Detection:
    """One face as the detector sees it, in the pixels of the image given to :func:`detect`.

    ``landmarks``: 5 x 2 (x, y): the subject's right eye, left eye, nose tip, right and left mouth
    corners ("right" is the subject's: the image's left in a frontal face).
    """

    box: tuple[float, float, float, float]  # left, top, right, bottom
    score: float
    landmarks: np.ndarray = field(compare=False, repr=False)

    @property
    def size(self) -> float:
        """The longer side of the box, px."""
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1])


#: Keypoint order after mirroring: the subject's right eye of the mirror image is their left eye.
_MIRRORED_KEYPOINTS = [1, 0, 2, 4, 3]


def detect(rgb: np.ndarray, min_score: float = 0.5, max_side: int = INPUT_SIDE, mirror: bool = True) -> list[Detection]:
    """Faces in an RGB uint8 H x W x 3 image, strongest first.

    The image is scaled (never up) so its long side is at most ``max_side`` <= 640 and placed in
    the top-left corner of the network's 640 x 640 input (zero padding, which YuNet was trained
    with); boxes and landmarks come back in ``rgb``'s pixels, clipped to it. ``mirror``: also run
    the network on the mirror image and pool both passes' candidates (see the module docstring).
    """
    height, width = rgb.shape[:2]
    if height < 2 or width < 2:
        return []
    side = min(max_side, INPUT_SIDE)
    scale = min(1.0, side / max(height, width))
    img = Image.fromarray(rgb)
    if scale < 1.0:
        # Pillow's bilinear resize is antialiased (its kernel widens with the scale); reducing_gap=1
        # lets it first box-reduce by the whole factor, which halves the cost of a 1600 -> 640 pass
        img = img.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BILINEAR, reducing_gap=1.0)
    w, h = img.size
    sx, sy = width / w, height / h  # exact back-projection (rounding of the resized size)
    pixels = np.asarray(img, np.float32)[:, :, ::-1].transpose(2, 0, 1)  # BGR 0-255, as trained
    boxes, scores, points = _run(pixels, min_score)
    plain = len(scores)  # candidates [0, plain) are the plain pass's
    if mirror:
        mb, ms, mp = _run(np.ascontiguousarray(pixels[:, :, ::-1]), min_score)
        # back to the unmirrored frame: x -> w - x (left and right edges swap), keypoints relabelled
        mb = np.stack([w - mb[:, 2], mb[:, 1], w - mb[:, 0], mb[:, 3]], axis=1)
        mp = mp[:, _MIRRORED_KEYPOINTS] * np.array([-1.0, 1.0]) + np.array([w, 0.0])
        boxes, scores, points = np.concatenate([boxes, mb]), np.concatenate([scores, ms]), np.concatenate([points, mp])
    found: list[Detection] = []
    kept: list[int] = []
    for i in _nms(boxes, scores, NMS_IOU):
        score = float(scores[i])
        if i >= plain:
            # A face the plain pass found too keeps the plain pass's box and keypoints (the face
            # mesh and the judges were made on those) with the better of the two scores.
            twins = [j for j in range(plain) if _iou(boxes[i], boxes[j]) > NMS_IOU]
            if twins:
                i = max(twins, key=lambda j: scores[j])
        if any(_iou(boxes[i], boxes[k]) > NMS_IOU for k in kept):
            continue  # that plain box already stands for a face: the same face, never counted twice
        kept.append(i)
        l, t, r, b = boxes[i]
        box = (max(0.0, l * sx), max(0.0, t * sy), min(float(width), r * sx), min(float(height), b * sy))
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            continue
        found.append(Detection(box, score, points[i] * np.array([sx, sy])))
    return found


def _run(pixels: np.ndarray, min_score: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The network on a 3 x h x w BGR float image (h, w <= 640) placed top-left in its 640 x 640
    input; the decoded candidates (:func:`_decode`)."""
    x = np.zeros((1, 3, INPUT_SIDE, INPUT_SIDE), np.float32)
    x[0, :, : pixels.shape[1], : pixels.shape[2]] = pixels
    sess = session(DETECTOR)
    names = [o.name for o in sess.get_outputs()]
    return _decode(dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: x}))), min_score)


def _decode(outputs: dict[str, np.ndarray], min_score: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (N x 4, l t r b), scores (N) and keypoints (N x 5 x 2) of every cell scoring >= min_score,
    in the network input's pixels."""
    all_boxes, all_scores, all_points = [], [], []
    for s in STRIDES:
        cols = INPUT_SIDE // s
        cls = np.clip(outputs[f"cls_{s}"].reshape(-1), 0.0, 1.0)
        obj = np.clip(outputs[f"obj_{s}"].reshape(-1), 0.0, 1.0)
        score = np.sqrt(cls * obj)
        keep = np.nonzero(score >= min_score)[0]
        if keep.size == 0:
            continue
        row, col = np.divmod(keep, cols)
        reg = outputs[f"bbox_{s}"].reshape(-1, 4)[keep].astype(np.float64)
        kps = outputs[f"kps_{s}"].reshape(-1, 5, 2)[keep].astype(np.float64)
        cx, cy = (col + reg[:, 0]) * s, (row + reg[:, 1]) * s
        bw, bh = np.exp(reg[:, 2]) * s, np.exp(reg[:, 3]) * s
        all_boxes.append(np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1))
        all_points.append(np.stack([(kps[:, :, 0] + col[:, None]) * s, (kps[:, :, 1] + row[:, None]) * s], axis=2))
        all_scores.append(score[keep])
    if not all_boxes:
        return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))
    return np.concatenate(all_boxes), np.concatenate(all_scores), np.concatenate(all_points)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (l, t, r, b) boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return float(w * h / union) if union > 0 else 0.0


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Indices kept by greedy non-maximum suppression, strongest first."""
    order = np.argsort(-scores, kind="stable")
    left, top, right, bottom = boxes.T if len(boxes) else (np.zeros(0),) * 4
    area = np.maximum(0.0, right - left) * np.maximum(0.0, bottom - top)
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(right[i], right[rest]) - np.maximum(left[i], left[rest]))
        h = np.maximum(0.0, np.minimum(bottom[i], bottom[rest]) - np.maximum(top[i], top[rest]))
        inter = w * h
        order = rest[inter / (area[i] + area[rest] - inter + 1e-9) <= iou]
    return keep
