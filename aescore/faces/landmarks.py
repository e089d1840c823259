"""Face and eye landmarks: MediaPipe's Face Mesh (468 points) and Iris (eyelid contours) models.

Both models want an upright, square crop of a known framing. The crops are cut with Pillow's
affine transform, rotated so the eye line is horizontal (MediaPipe's convention), and the
predicted points are mapped back to the image's pixels. Geometry is continuous: pixel i spans
[i, i + 1], as Pillow's AFFINE uses it.

"right"/"left" are the subject's: the subject's right eye is on the image's left in a frontal face.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from aescore.faces.detect import Detection
from aescore.faces.models import IRIS, MESH, session

MESH_INPUT = 192
IRIS_INPUT = 64
#: Face Mesh crop: this times the detector box's longer side (MediaPipe's detection-to-ROI scale).
MESH_CROP_SCALE = 1.5
#: Iris crop: this times the eye's corner-to-corner width (MediaPipe's iris ROI scale).
IRIS_CROP_SCALE = 2.3

# Face Mesh indices: eye corners (outer, inner) per eye, and the forehead/chin axis.
RIGHT_EYE_CORNERS = (33, 133)
LEFT_EYE_CORNERS = (362, 263)  # inner, outer: as MediaPipe orders the left eye's ROI
FOREHEAD, CHIN = 10, 152

# Iris model contour: 71 points; the first 16 are the eye: 0 and 8 the corners, 1-7 the lower lid,
# 9-15 the upper lid, ordered so lower[k] and upper[k] lie across the eye from each other.
_LOWER = list(range(1, 8))
_UPPER = list(range(9, 16))


@dataclass(frozen=True)
class Mesh:
    """The 468 Face Mesh points of one face.

    ``points``: 468 x 3 (x, y in image px; z relative depth, px-scaled like x). ``local``: the same
    points in the crop's frame (192 px, eye line horizontal), where head pose is easy to read.
    ``presence``: the model's face-flag probability (low for non-faces and faces seen edge-on; it
    does not reject animal faces).
    """

    points: np.ndarray = field(repr=False)
    local: np.ndarray = field(repr=False)
    presence: float

    @property
    def eye_span(self) -> float:
        """Outer-corner to outer-corner distance, image px: the face's scale."""
        return float(np.linalg.norm(self.points[LEFT_EYE_CORNERS[1], :2] - self.points[RIGHT_EYE_CORNERS[0], :2]))

    @property
    def yaw(self) -> float:
        """Head turn, degrees (0 frontal): the eye line's angle out of the image plane."""
        d = self.local[LEFT_EYE_CORNERS[1]] - self.local[RIGHT_EYE_CORNERS[0]]
        return math.degrees(math.atan2(abs(d[2]), abs(d[0]) + 1e-9))

    @property
    def pitch(self) -> float:
        """Head nod, degrees (positive: face turned down), from the forehead-chin axis's depth."""
        d = self.local[CHIN] - self.local[FOREHEAD]
        return math.degrees(math.atan2(d[2], abs(d[1]) + 1e-9))


@dataclass(frozen=True)
class Eye:
    """One eye from the Iris model: its eyelid contour and how open it is.

    ``openness``: mean gap between 7 upper/lower eyelid point pairs divided by the corner-to-corner
    width (about 0.15-0.3 open, under 0.1 closed). ``width``: that width, image px.
    ``sclera``: how much brighter the white of the eye is than the iris, in units of the eye
    region's contrast (about 0.5-3 for a visible open eye; near 0 or None behind dark glasses,
    where the model still draws an open eye). ``contour``: the 16 eye points (image px);
    ``iris``: 5 points, the centre first.
    """

    openness: float
    width: float
    sclera: float | None
    contour: np.ndarray = field(repr=False)
    iris: np.ndarray = field(repr=False)


def rotated_crop(img: Image.Image, cx: float, cy: float, side: float, angle: float, out: int,
                 flip: bool = False) -> Image.Image:
    """A ``side``-px square centred at (cx, cy) whose x axis points along ``angle`` (radians, image
    frame), resampled to ``out`` x ``out``; mirrored left-right when ``flip``. Outside the image is
    black, as the models saw at frame edges in training.

    A crop much larger than ``out`` is first reduced with an antialiasing resize: the affine
    transform samples bilinearly and would alias otherwise.
    """
    reach = side * 0.75  # >= half the diagonal of the rotated square
    box = (math.floor(cx - reach), math.floor(cy - reach), math.ceil(cx + reach), math.ceil(cy + reach))
    region = img.crop(box)
    k = out / side
    fx = fy = 1.0
    if k < 0.5:
        nw, nh = max(1, round(region.width * k * 2)), max(1, round(region.height * k * 2))
        fx, fy = nw / region.width, nh / region.height
        region = region.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=2.0)
    ca, sa, step, half = math.cos(angle), math.sin(angle), side / out, side / 2
    sg = -1.0 if flip else 1.0
    # output (U, V) -> image (X, Y): du = sg * (U * step - half), dv = V * step - half,
    # X = cx + ca * du - sa * dv, Y = cy + sa * du + ca * dv
    a, b, c = sg * ca * step, -sa * step, cx - sg * ca * half + sa * half
    d, e, f = sg * sa * step, ca * step, cy - sg * sa * half - ca * half
    coeffs = (a * fx, b * fx, (c - box[0]) * fx, d * fy, e * fy, (f - box[1]) * fy)
    return region.transform((out, out), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR)


def unproject(points: np.ndarray, cx: float, cy: float, side: float, angle: float, out: int,
              flip: bool = False) -> np.ndarray:
    """Points (x, y[, z]) in an ``out``-px crop made by :func:`rotated_crop` -> image px (z scaled as x)."""
    step = side / out
    du = points[:, 0] * step - side / 2
    if flip:
        du = -du
    dv = points[:, 1] * step - side / 2
    ca, sa = math.cos(angle), math.sin(angle)
    res = points.astype(np.float64).copy()
    res[:, 0] = cx + ca * du - sa * dv
    res[:, 1] = cy + sa * du + ca * dv
    if points.shape[1] > 2:
        res[:, 2] = points[:, 2] * step
    return res


def _eye_line_angle(right_eye: np.ndarray, left_eye: np.ndarray) -> float:
    """Rotation that makes the line from the subject's right eye to the left eye horizontal."""
    return math.atan2(float(left_eye[1] - right_eye[1]), float(left_eye[0] - right_eye[0]))


def _to_input(crop: Image.Image) -> np.ndarray:
    """A crop as the MediaPipe models take it: 1 x 3 x H x W, RGB scaled to 0-1."""
    return (np.asarray(crop, np.float32) / 255.0).transpose(2, 0, 1)[None]


def face_mesh(img: Image.Image, face: Detection) -> Mesh:
    """The Face Mesh of a detected face in ``img`` (the image the detection's pixels refer to)."""
    left, top, right, bottom = face.box
    cx, cy = (left + right) / 2, (top + bottom) / 2
    side = MESH_CROP_SCALE * max(right - left, bottom - top)
    angle = _eye_line_angle(face.landmarks[0], face.landmarks[1])
    crop = rotated_crop(img, cx, cy, side, angle, MESH_INPUT)
    sess = session(MESH)
    outputs = dict(zip((o.name for o in sess.get_outputs()), sess.run(None, {sess.get_inputs()[0].name: _to_input(crop)})))
    local = next(v for v in outputs.values() if v.size == 468 * 3).reshape(468, 3).astype(np.float64)
    flag = float(next(v for v in outputs.values() if v.size == 1).ravel()[0])
    presence = 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, flag))))
    return Mesh(unproject(local, cx, cy, side, angle, MESH_INPUT), local, presence)


def eye(img: Image.Image, mesh: Mesh, right: bool) -> Eye:
    """The Iris model's reading of one eye (``right``: the subject's right eye).

    The crop follows MediaPipe: centred between the two mesh corners, 2.3 x their distance,
    rotated along them; the subject's left eye is mirrored, as the model only knows right eyes.
    """
    a, b = RIGHT_EYE_CORNERS if right else LEFT_EYE_CORNERS
    pa, pb = mesh.points[a, :2], mesh.points[b, :2]
    cx, cy = (pa + pb) / 2
    side = IRIS_CROP_SCALE * float(np.linalg.norm(pa - pb))
    angle = _eye_line_angle(pa, pb)
    flip = not right
    crop = rotated_crop(img, float(cx), float(cy), max(side, 1.0), angle, IRIS_INPUT, flip=flip)
    sess = session(IRIS)
    contour, iris = sess.run(None, {sess.get_inputs()[0].name: _to_input(crop)})
    pts = unproject(contour.reshape(71, 3)[:16], float(cx), float(cy), max(side, 1.0), angle, IRIS_INPUT, flip=flip)
    iris_pts = unproject(iris.reshape(5, 3), float(cx), float(cy), max(side, 1.0), angle, IRIS_INPUT, flip=flip)
    width = float(np.linalg.norm(pts[0, :2] - pts[8, :2]))
    gap = np.linalg.norm(pts[_UPPER, :2] - pts[_LOWER, :2], axis=1)
    sclera = _sclera_contrast(crop, contour.reshape(71, 3)[:16, :2], iris.reshape(5, 3)[:, :2])
    return Eye(float(gap.mean() / max(width, 1e-6)), width, sclera, pts[:, :2], iris_pts[:, :2])


def _sclera_contrast(crop: Image.Image, contour: np.ndarray, iris: np.ndarray) -> float | None:
    """White-of-the-eye minus iris brightness over the eye region's spread, in the 64 px crop.

    Dark glasses hide both, and the Iris model then still places an open eye on the lens; a
    visible open eye has a sclera clearly brighter than its iris whatever the skin, light or
    exposure. None when the eye opening holds too few pixels of either to tell.
    """
    lum = np.asarray(crop.convert("L"), np.float32)
    outline = [tuple(map(float, p)) for p in np.concatenate([contour[0:9], contour[15:8:-1]])]
    mask_img = Image.new("L", crop.size, 0)
    ImageDraw.Draw(mask_img).polygon(outline, fill=1)
    opening = np.asarray(mask_img, bool)
    radius = float(np.mean(np.linalg.norm(iris[1:] - iris[0], axis=1)))
    yy, xx = np.mgrid[0:crop.height, 0:crop.width]
    dist = np.hypot(xx + 0.5 - iris[0, 0], yy + 0.5 - iris[0, 1])
    iris_px, sclera_px = opening & (dist < 0.8 * radius), opening & (dist > 1.15 * radius)
    if iris_px.sum() < 3 or sclera_px.sum() < 3:
        return None
    top, bottom = int(max(0.0, contour[:, 1].min() - 12)), int(min(crop.height, contour[:, 1].max() + 12))
    spread = float(lum[top:bottom].std()) + 5.0  # +5 grey levels: a flat, dark region stays near 0
    return float((np.percentile(lum[sclera_px], 75) - np.median(lum[iris_px])) / spread)
