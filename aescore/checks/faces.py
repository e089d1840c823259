"""The ``faces`` check: how many faces, whose eyes are closed, which are out of focus
(``--check faces`` on score, rank and report; the contact sheet then shows the badge, the face boxes
and a "people" filter). Opt-in: it costs more than the 20 % of a rank run that would make it a
default (benchmarks/bench_faces.py, docs/performance.md); ``--crop`` and ``--reject-closed-eyes``
run it for their rules. Culling's rules on its fields: :mod:`aescore.cull.people`.

The work is :func:`aescore.faces.analyse`'s (three small ONNX models shipped in ``weights/faces``);
this module only turns its faces into fields. It imports nothing heavy at import time: every
check module is imported whenever checks are listed.
"""

from __future__ import annotations

from typing import Any

from aescore.checks.base import (
    Check,
    Field,
    FieldKind,
    Needs,
    PhotoData,
    register_check,
)

#: Long edge of the array the check reads: landmarks and focus are judged on it; detection runs on
#: a <= 640 px copy made from it. 1600 px keeps a group photo's faces big enough for the eyelids
#: while a big face costs ~15 ms, not the 50-70 ms of a full-resolution crop.
IMAGE_SIZE = 1600

#: A face is one of the photo's main faces when its eye span is at least this share of the
#: largest judged face's: the badge speaks for them, not for a small passer-by behind the subject.
MAIN_FACE_SHARE = 0.5

#: The values the ``people`` field joins (with ", "), or ``"none"``: what culling reads
#: (:mod:`aescore.cull.people`).
EYES_CLOSED = "eyes closed"
SOFT_FACE = "soft face"


class FacesCheck(Check):
    """Faces found (YuNet), their eyes open or closed and their focus (MediaPipe Face Mesh + Iris)."""

    name = "faces"
    description = "faces found, closed eyes and out-of-focus faces (eyes and focus judged per face, or unknown)"
    version = 2  # 2: the mirror pass and the 0.75 face score. Bump when aescore.faces or its models change: cached rows are recomputed
    needs = Needs(image_size=IMAGE_SIZE)
    report = False  # opt-in, also in the contact sheet: see the module docstring
    fields = (
        Field("faces", FieldKind.NUMBER, "number of faces found", places=0),
        Field("eyes_closed", FieldKind.NUMBER, "faces whose eyes are both closed", places=0),
        Field("faces_soft", FieldKind.NUMBER, "faces out of focus", places=0),
        Field("people", FieldKind.TEXT,
              "'eyes closed', 'soft face', 'eyes closed, soft face' or 'none', for the photo's main faces "
              "(those at least half the size of the largest judged face)",
              badge=True, filter="people"),
        Field("face_list", FieldKind.OBJECT,
              "per face: box_fraction [left, top, right, bottom] as fractions of the photo's width and height, "
              "confidence, eyes (open/closed/unknown), focus (sharp/soft/unknown)"),
    )

    def compute(self, photo: PhotoData) -> dict[str, Any]:
        from aescore.faces import analyse

        image = photo.image
        height, width = image.shape[:2]
        faces = analyse(image)
        spans = [f.eye_span for f in faces if f.eye_span is not None and (f.eyes != "unknown" or f.focus != "unknown")]
        main = MAIN_FACE_SHARE * max(spans) if spans else float("inf")
        main_faces = [f for f in faces if f.eye_span is not None and f.eye_span >= main]
        problems = []
        if any(f.eyes == "closed" for f in main_faces):
            problems.append(EYES_CLOSED)
        if any(f.focus == "soft" for f in main_faces):
            problems.append(SOFT_FACE)
        return {
            "faces": len(faces),
            "eyes_closed": sum(f.eyes == "closed" for f in faces),
            "faces_soft": sum(f.focus == "soft" for f in faces),
            "people": ", ".join(problems) or "none",
            "face_list": [
                {
                    # PhotoData holds the scaled array only, not the photo's own size: fractions of the
                    # upright photo's width and height are the same at every size.
                    "box_fraction": [
                        round(f.box[0] / width, 4), round(f.box[1] / height, 4),
                        round(f.box[2] / width, 4), round(f.box[3] / height, 4),
                    ],
                    "confidence": f.confidence,
                    "eyes": f.eyes,
                    "focus": f.focus,
                }
                for f in faces
            ],
        }


register_check(FacesCheck())
