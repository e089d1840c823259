"""The face models: where they are, their verification, and one ONNX Runtime session each.

The three ONNX files ship in ``weights/faces/`` (package data ``aescore/_weights/faces`` in a
wheel), found through the same lookup as aescore's own models
(:func:`aescore.weights.shipped_weights_dirs`; never ``$AESCORE_WEIGHTS_DIR``, which is for scoring
models). Their card, ``README.md`` beside them, lists each file's sha256 in ``sha256sum`` format;
a file whose bytes differ is refused with one :class:`~aescore.errors.WeightsError` line, and the
bytes hashed are the bytes loaded (:func:`aescore.weights.read_verified`, which also remembers a
verified file per file state so it is hashed once, not on every run).
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from aescore.errors import WeightsError

if TYPE_CHECKING:
    import onnxruntime as ort

#: YuNet 2023mar face detector (OpenCV Zoo, MIT), byte-for-byte as published; input 1x3x640x640 BGR 0-255.
DETECTOR = "face_detection_yunet_2023mar.onnx"
#: MediaPipe Face Mesh (468 points, Apache-2.0), converted from mediapipe 0.10.21's tflite; input 1x3x192x192 RGB 0-1.
MESH = "face_landmark_mp0.10.21.onnx"
#: MediaPipe Iris (71 eye-contour + 5 iris points, Apache-2.0), from mediapipe 0.10.21; input 1x3x64x64 RGB 0-1.
IRIS = "iris_landmark_mp0.10.21.onnx"
MODELS = (DETECTOR, MESH, IRIS)

#: The folder under the shipped weights folder, and the card in it.
SUBDIR = "faces"
CARD = "README.md"

# "<64 hex>  <file name>" lines, as sha256sum prints them (the card's checksum block).
_SHA_LINE = re.compile(r"^([0-9a-f]{64})  ([A-Za-z0-9._-]+)\s*$", re.MULTILINE)

_lock = threading.Lock()
_sessions: dict[str, ort.InferenceSession] = {}


def models_dir() -> Path:
    """The folder of the face models: ``faces/`` in the first shipped weights folder that has one."""
    from aescore.weights import shipped_weights_dirs

    for folder in shipped_weights_dirs():
        if (folder / SUBDIR / CARD).is_file():
            return folder / SUBDIR
    raise WeightsError("the face models are missing (weights/faces, package data aescore/_weights/faces); reinstall aescore")


def card_sha256(folder: Path) -> dict[str, str]:
    """File name -> sha256, from the card's ``sha256sum``-format lines."""
    card = folder / CARD
    try:
        text = card.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WeightsError(f"{card}: cannot read the face models' card ({exc})") from None
    return {name: sha for sha, name in _SHA_LINE.findall(text)}


def session(name: str) -> ort.InferenceSession:
    """The process's one ONNX Runtime session of model ``name`` (one of :data:`MODELS`), made on
    first use after the file's sha256 is checked against the card.

    One intra-op thread: the models are tiny (0.2-2.6 MB, 3-9 ms a run) and the research on a
    shared 2-core machine found more threads slower, not faster; parallelism belongs to the
    caller (photos), not to these small graphs.
    """
    with _lock:
        sess = _sessions.get(name)
        if sess is None:
            sess = _open(name)
            _sessions[name] = sess
    return sess


def _open(name: str) -> ort.InferenceSession:
    import onnxruntime as ort

    from aescore.weights import read_verified

    folder = models_dir()
    expected = card_sha256(folder).get(name)
    if expected is None:
        raise WeightsError(f"{folder / CARD}: no sha256 listed for {name}; refusing to load it")
    data = read_verified(folder / name, expected)  # raises WeightsError (one line) when tampered with
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: no optimiser chatter on stderr
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own types; the user needs one line
        raise WeightsError(f"{folder / name}: ONNX Runtime cannot load it ({type(exc).__name__})") from None


def clear_sessions() -> None:
    """Forget the sessions (tests that swap the model folder; a later call opens them again)."""
    with _lock:
        _sessions.clear()
