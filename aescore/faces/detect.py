"""Face detection with YuNet 2023mar: the network on a <= 640 px copy, its outputs decoded in numpy.

YuNet is anchor-free: for each stride s in (8, 16, 32) and each cell (row r, column c) of the
s-strided grid it predicts a class and an objectness probability (the face score is their
geometric mean, as OpenCV's ``FaceDetectorYN`` computes it), a box centre offset and log-size in
units of s, and five keypoints in units of s. The decode below is that scheme; OpenCV is not used.
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


def detect(rgb: np.ndarray, min_score: float = 0.5, max_side: int = INPUT_SIDE) -> list[Detection]:
    """Faces in an RGB uint8 H x W x 3 image, strongest first.

    The image is scaled (never up) so its long side is at most ``max_side`` <= 640 and placed in
    the top-left corner of the network's 640 x 640 input (zero padding, which YuNet was trained
    with); boxes and landmarks come back in ``rgb``'s pixels, clipped to it.
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
    x = np.zeros((1, 3, INPUT_SIDE, INPUT_SIDE), np.float32)
    x[0, :, :h, :w] = np.asarray(img, np.float32)[:, :, ::-1].transpose(2, 0, 1)  # BGR 0-255, as trained
    sess = session(DETECTOR)
    names = [o.name for o in sess.get_outputs()]
    outputs = dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: x})))
    boxes, scores, points = _decode(outputs, min_score)
    found: list[Detection] = []
    for i in _nms(boxes, scores, NMS_IOU):
        l, t, r, b = boxes[i]
        box = (max(0.0, l * sx), max(0.0, t * sy), min(float(width), r * sx), min(float(height), b * sy))
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            continue
        found.append(Detection(box, float(scores[i]), points[i] * np.array([sx, sy])))
    return found


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
