"""The faces check (aescore.faces, aescore/checks/faces.py): faces found, eyes open or closed, face
focus, on one public-domain portrait (tests/data/astronaut.jpg, see tests/data/SOURCES.md) and cases
made from it here. Offline: the three ONNX models ship in weights/faces."""

from __future__ import annotations

import fnmatch
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from aescore.checks import PhotoData, get_check
from aescore.errors import WeightsError
from aescore.faces import Face, analyse, judge
from aescore.faces import models as face_models
from aescore.fsutil import file_sha256

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = None

ROOT = Path(__file__).resolve().parents[1]
PORTRAIT = ROOT / "tests" / "data" / "astronaut.jpg"
# Where the portrait's eyes are (448 x 448 px): centre x, y and corner-to-corner width, measured once.
EYES = ((178.4, 89.0, 15.7), (215.9, 91.1, 16.3))


@pytest.fixture(autouse=True)
def _fresh_sessions() -> Iterator[None]:
    """Sessions are per process; a test that swaps the model folder must not leak its sessions."""
    yield
    face_models.clear_sessions()


def portrait() -> np.ndarray:
    return np.asarray(Image.open(PORTRAIT).convert("RGB"))


def only_face(faces: list[Face]) -> Face:
    assert len(faces) == 1, faces
    return faces[0]


def blur(rgb: np.ndarray, sigma: float) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(sigma)), np.float64)


def face_mask(rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """1 inside an ellipse 1.25 x the face box, fading to 0 over its edge (H x W x 1)."""
    h, w = rgb.shape[:2]
    left, top, right, bottom = box
    yy, xx = np.mgrid[0:h, 0:w]
    d = np.hypot((xx - (left + right) / 2) / ((right - left) * 0.625), (yy - (top + bottom) / 2) / ((bottom - top) * 0.625))
    return np.clip((1.0 - d) / 0.12 + 0.5, 0.0, 1.0)[..., None]


def mix(mask: np.ndarray, inside: np.ndarray, outside: np.ndarray) -> np.ndarray:
    return np.clip(mask * inside + (1 - mask) * outside + 0.5, 0, 255).astype(np.uint8)


def eyes_painted_closed(rgb: np.ndarray) -> np.ndarray:
    """Each eye covered with the skin just below it, and a darker lid line from corner to corner."""
    img = Image.fromarray(rgb)
    draw = ImageDraw.Draw(img)
    for x, y, w in EYES:
        skin = tuple(int(v) for v in np.median(rgb[int(y + 0.5 * w):int(y + 0.9 * w), int(x - 0.4 * w):int(x + 0.4 * w)].reshape(-1, 3), axis=0))
        draw.ellipse([x - 0.75 * w, y - 0.45 * w, x + 0.75 * w, y + 0.4 * w], fill=skin)
        draw.line([(x - 0.5 * w, y), (x, y + 0.12 * w), (x + 0.5 * w, y)], fill=tuple(int(v * 0.55) for v in skin), width=1)
    return np.asarray(img)


def face_blurred(rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """The face blurred with sigma 2 px at the face scale (its eye span, ~55 px, is under
    judge.FOCUS_SPAN: the photo's own pixels), everything else untouched."""
    return mix(face_mask(rgb, box), blur(rgb, 2.0), rgb.astype(np.float64))


# -- the portrait and the cases made from it -----------------------------------------------------------
def test_the_portrait_has_one_sharp_face_with_open_eyes() -> None:
    face = only_face(analyse(portrait()))
    left, top, right, bottom = face.box
    assert 150 < left < right < 245 and 45 < top < bottom < 165  # her face, not the helmet or the flag
    assert face.confidence >= 0.9
    assert (face.eyes, face.focus) == ("open", "sharp")
    assert face.eye_openness is not None and min(face.eye_openness) >= judge.EYE_OPEN
    assert face.eye_span is not None and judge.MIN_EYE_SPAN <= face.eye_span < judge.FOCUS_SPAN
    assert face.softness is not None and face.softness < judge.FOCUS_SHARP


def test_eyes_painted_closed_read_closed_and_the_face_stays_sharp() -> None:
    face = only_face(analyse(eyes_painted_closed(portrait())))
    assert face.eyes == "closed"
    assert face.eye_openness is not None and max(face.eye_openness) < judge.EYE_CLOSED
    assert face.focus == "sharp"


def test_a_blurred_face_before_a_sharp_background_is_soft() -> None:
    rgb = portrait()
    face = only_face(analyse(face_blurred(rgb, only_face(analyse(rgb)).box)))
    assert face.focus == "soft"
    assert face.eyes == "open"  # blur is not closed eyes


def test_a_sharp_face_before_a_blurred_background_is_sharp() -> None:
    rgb = portrait()
    box = only_face(analyse(rgb)).box
    face = only_face(analyse(mix(face_mask(rgb, box), rgb.astype(np.float64), blur(rgb, 4.0))))
    assert (face.focus, face.eyes) == ("sharp", "open")


@pytest.mark.parametrize("channels", [1, 3])
def test_a_greyscale_portrait_reads_the_same(channels: int) -> None:
    grey = np.asarray(Image.open(PORTRAIT).convert("L"))
    face = only_face(analyse(grey if channels == 1 else np.repeat(grey[..., None], 3, axis=2)))
    assert (face.eyes, face.focus) == ("open", "sharp")


@pytest.mark.parametrize("side", ["left", "right"])
def test_a_face_cut_by_the_frame_is_not_judged(side: str) -> None:
    rgb = portrait()
    left, _, right, _ = only_face(analyse(rgb)).box
    middle = int((left + right) / 2)
    cut = rgb[:, middle - 10:] if side == "left" else rgb[:, :middle + 10]  # one eye outside the frame
    faces = analyse(cut)
    assert len(faces) <= 1
    for face in faces:
        assert face.eyes == "unknown" and face.focus == "unknown"


@pytest.mark.parametrize("size", [40, 112])
def test_a_tiny_face_is_never_judged(size: int) -> None:
    small = np.asarray(Image.open(PORTRAIT).convert("RGB").resize((size, size), Image.LANCZOS))
    faces = analyse(small)
    assert len(faces) <= 1
    assert all(f.eyes == "unknown" and f.focus == "unknown" for f in faces)


def test_fifty_faces_are_counted_and_judged() -> None:
    rgb = portrait()
    left, top, right, bottom = (int(v) for v in only_face(analyse(rgb)).box)
    w, h = right - left, bottom - top
    tile = rgb[top - h // 4:bottom + h // 6, left - w // 5:right + w // 5]
    grid = np.concatenate([np.concatenate([tile] * 10, axis=1)] * 5, axis=0)
    faces = analyse(grid)
    assert len(faces) == 50
    assert all(f.eyes == "open" and f.focus == "sharp" for f in faces)
    assert len({(round(f.box[0] / tile.shape[1]), round(f.box[1] / tile.shape[0])) for f in faces}) == 50  # one per tile


def test_the_mirror_pass_maps_faces_back_to_the_photo(monkeypatch: pytest.MonkeyPatch) -> None:
    """A face found only in the mirror image comes back where it is in the photo, its keypoints
    relabelled (the subject's right eye stays the one on the image's left), and with its score."""
    from aescore.faces import detect as detect_module

    rgb = portrait()
    (plain,) = detect_module.detect(rgb, min_score=0.5, mirror=False)
    real_run = detect_module._run
    calls: list[int] = []

    def plain_pass_finds_nothing(pixels: np.ndarray, min_score: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        calls.append(1)
        boxes, scores, points = real_run(pixels, min_score)
        return (boxes[:0], scores[:0], points[:0]) if len(calls) == 1 else (boxes, scores, points)

    monkeypatch.setattr(detect_module, "_run", plain_pass_finds_nothing)
    (mirrored,) = detect_module.detect(rgb, min_score=0.5, mirror=True)
    assert len(calls) == 2
    assert np.allclose(mirrored.box, plain.box, atol=4.0)  # the same face, found on the mirror image
    assert np.allclose(mirrored.landmarks, plain.landmarks, atol=6.0)  # right eye, left eye, nose, mouth corners
    assert mirrored.landmarks[0, 0] < mirrored.landmarks[1, 0]
    assert 0.5 <= mirrored.score <= 1.0


def test_a_face_both_passes_find_is_one_face_with_the_plain_box_and_the_better_score() -> None:
    from aescore.faces.detect import detect

    rgb = portrait()
    (plain,) = detect(rgb, min_score=0.5, mirror=False)
    (mirror_only,) = detect(np.ascontiguousarray(rgb[:, ::-1]), min_score=0.5, mirror=False)
    (both,) = detect(rgb, min_score=0.5, mirror=True)
    assert both.box == plain.box
    assert both.score == pytest.approx(max(plain.score, mirror_only.score), abs=1e-6)


def test_a_painting_without_faces_has_none() -> None:
    rng = np.random.default_rng(7)
    canvas = Image.new("RGB", (640, 480), (200, 180, 150))
    draw = ImageDraw.Draw(canvas)
    for _ in range(400):
        x, y = int(rng.integers(0, 640)), int(rng.integers(0, 480))
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        draw.line([(x, y), (x + int(rng.integers(-60, 60)), y + int(rng.integers(-60, 60)))], fill=colour, width=int(rng.integers(3, 14)))
    assert analyse(np.asarray(canvas.filter(ImageFilter.GaussianBlur(1.5)))) == []


@pytest.mark.parametrize("shape", [(0, 0, 3), (1, 1, 3), (5, 300, 3)])
def test_degenerate_arrays_have_no_faces(shape: tuple[int, int, int]) -> None:
    assert analyse(np.zeros(shape, np.uint8)) == []


def test_analyse_refuses_what_is_not_an_rgb_image() -> None:
    with pytest.raises(ValueError):
        analyse(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(ValueError):
        analyse(np.zeros((32, 32, 2), np.uint8))


# -- the check -----------------------------------------------------------------------------------------
def test_the_check_declares_its_fields() -> None:
    check = get_check("faces")
    assert check.needs.image_size == 1600 and not check.report and check.flag is None and check.cached  # opt-in (bench_faces)
    fields = {f.name: f for f in check.fields}
    assert list(fields) == ["faces", "eyes_closed", "faces_soft", "people", "face_list"]
    assert all(fields[n].kind.value == "number" and fields[n].places == 0 for n in ("faces", "eyes_closed", "faces_soft"))
    assert fields["people"].badge and fields["people"].filter == "people"
    assert fields["face_list"].kind.value == "object"


def compute(rgb: np.ndarray) -> dict:
    return get_check("faces").compute(PhotoData("portrait.jpg", rgb))


def test_the_check_on_the_portrait() -> None:
    rgb = portrait()
    fields = compute(rgb)
    assert (fields["faces"], fields["eyes_closed"], fields["faces_soft"], fields["people"]) == (1, 0, 0, "none")
    (entry,) = fields["face_list"]
    assert set(entry) == {"box_fraction", "confidence", "eyes", "focus"}
    box = only_face(analyse(rgb)).box
    assert entry["box_fraction"] == pytest.approx([box[0] / 448, box[1] / 448, box[2] / 448, box[3] / 448], abs=1e-4)
    assert (entry["eyes"], entry["focus"]) == ("open", "sharp")


def test_the_check_names_what_is_wrong() -> None:
    rgb = portrait()
    box = only_face(analyse(rgb)).box
    closed = eyes_painted_closed(rgb)
    assert compute(closed)["people"] == "eyes closed" and compute(closed)["eyes_closed"] == 1
    soft = compute(face_blurred(rgb, box))
    assert (soft["people"], soft["faces_soft"]) == ("soft face", 1)
    both = compute(np.concatenate([closed, face_blurred(rgb, box)], axis=1))  # two people side by side
    assert (both["faces"], both["eyes_closed"], both["faces_soft"], both["people"]) == (2, 1, 1, "eyes closed, soft face")


def test_blurred_closed_eyes_are_never_called_open() -> None:
    rgb = portrait()
    face = only_face(analyse(face_blurred(eyes_painted_closed(rgb), only_face(analyse(rgb)).box)))
    assert face.focus == "soft" and face.eyes != "open"


def test_the_check_without_faces() -> None:
    fields = compute(np.full((300, 400, 3), 128, np.uint8))
    assert fields == {"faces": 0, "eyes_closed": 0, "faces_soft": 0, "people": "none", "face_list": []}


# -- the models -----------------------------------------------------------------------------------------
def test_the_card_lists_every_model_with_its_sha256() -> None:
    folder = face_models.models_dir()
    listed = face_models.card_sha256(folder)
    assert set(listed) == set(face_models.MODELS)
    for name, sha in listed.items():
        assert (folder / name).stat().st_size <= 50 * 1024 * 1024
        assert file_sha256(folder / name) == sha
    assert (folder / "LICENSE-yunet").is_file() and (folder / "LICENSE-mediapipe").is_file()


@pytest.mark.skipif(tomllib is None, reason="tomllib (Python 3.11+)")
def test_the_wheel_ships_the_face_models() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = config["package-data"]["aescore._weights"]
    for path in (ROOT / "weights" / "faces").iterdir():
        assert any(fnmatch.fnmatch(f"faces/{path.name}", p) for p in patterns), path.name


def test_one_single_threaded_session_per_model() -> None:
    first = face_models.session(face_models.MESH)
    assert face_models.session(face_models.MESH) is first
    assert first.get_session_options().intra_op_num_threads == 1


def test_a_tampered_model_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = face_models.models_dir()
    copy = tmp_path / "weights" / "faces"
    shutil.copytree(shipped, copy)
    data = bytearray((copy / face_models.IRIS).read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, same size
    (copy / face_models.IRIS).write_bytes(bytes(data))
    import aescore.weights

    monkeypatch.setattr(aescore.weights, "shipped_weights_dirs", lambda: [tmp_path / "weights"])
    face_models.clear_sessions()
    assert face_models.models_dir() == copy
    with pytest.raises(WeightsError) as err:
        analyse(portrait())
    message = str(err.value)
    assert "\n" not in message and face_models.IRIS in message and "sha256" in message


def test_a_model_the_card_does_not_list_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "weights" / "faces"
    shutil.copytree(face_models.models_dir(), copy)
    card = copy / face_models.CARD
    card.write_text("\n".join(line for line in card.read_text().splitlines() if face_models.DETECTOR not in line))
    import aescore.weights

    monkeypatch.setattr(aescore.weights, "shipped_weights_dirs", lambda: [tmp_path / "weights"])
    face_models.clear_sessions()
    with pytest.raises(WeightsError, match="no sha256 listed"):
        analyse(portrait())


def test_missing_models_are_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import aescore.weights

    monkeypatch.setattr(aescore.weights, "shipped_weights_dirs", lambda: [tmp_path])
    face_models.clear_sessions()
    with pytest.raises(WeightsError) as err:
        analyse(portrait())
    assert "\n" not in str(err.value) and "face models" in str(err.value)
