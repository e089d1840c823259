"""The built-in checks: the model score, EXIF facts, capture time (for bursts), thumbnails, the
model's region map (for the HTML report) and the reasons (which fault the model sees)."""

from __future__ import annotations

import base64
from typing import Any

from aescore.checks.base import Check, Field, FieldKind, Needs, PhotoData, register_check

#: Score at and above which a photo is labelled "high" (the binary classifier's boundary).
HIGH_THRESHOLD = 0.5


def label(score: float) -> str:
    """``"high"`` if ``score >= 0.5`` else ``"low"``."""
    return "high" if score >= HIGH_THRESHOLD else "low"


class ScoreCheck(Check):
    """The model's P(high) and its label. Not cached as a check: P(high) is the score cache's row."""

    name = "score"
    description = "the model's probability that the photo is in its 'high' class, and the label"
    needs = Needs(outputs=frozenset({"p_high"}))
    fields = (
        Field("score", FieldKind.NUMBER, "P(high) in [0, 1]"),
        Field("label", FieldKind.TEXT, "high when score >= 0.5, else low"),
    )
    model_dependent = True
    cached = False

    def compute(self, photo: PhotoData) -> dict[str, Any]:
        score = float(photo.outputs["p_high"])
        return {"score": score, "label": label(score)}


class ExifCheck(Check):
    """Capture time, camera, lens and exposure (``--exif``)."""

    name = "exif"
    description = "capture time, camera, lens and exposure from EXIF"
    needs = Needs(exif=True)
    report = True
    flag = "--exif"
    flag_help = "Add capture time, camera, lens and exposure (= --check exif)."
    fields = (
        Field("capture_time", FieldKind.TEXT, "ISO 8601 capture time"),
        Field("camera", FieldKind.TEXT, "camera make and model"),
        Field("lens", FieldKind.TEXT, "lens model"),
        Field("exposure", FieldKind.TEXT, "shutter, aperture, ISO, focal length"),
    )

    def compute(self, photo: PhotoData) -> dict[str, Any]:
        return dict(photo.exif.to_dict())


class CaptureCheck(Check):
    """Seconds since the epoch of the capture (EXIF time, else the file's mtime): burst grouping's input."""

    name = "capture"
    description = "capture timestamp for burst grouping (EXIF time, else file mtime)"
    needs = Needs(exif=True)
    fields = (Field("timestamp", FieldKind.HIDDEN, "capture time, seconds since the epoch"),)

    def compute(self, photo: PhotoData) -> dict[str, Any]:
        from aescore.inference.exif import capture_timestamp

        try:
            return {"timestamp": capture_timestamp(photo.path, photo.exif)}
        except OSError:
            return {"timestamp": 0.0}


class ThumbnailCheck(Check):
    """A JPEG thumbnail for the HTML report (base64 text; see :func:`aescore.data.thumbs.make_thumbnail`),
    made from the decode the scorer already does, never from a second one."""

    name = "thumbnail"
    description = "JPEG thumbnail for the HTML report"
    needs = Needs(image_size=512)
    report = True
    fields = (Field("thumbnail", FieldKind.HIDDEN, "base64 JPEG, long edge <= 512 px, <= 58 kB"),)

    def compute(self, photo: PhotoData) -> dict[str, Any]:
        from PIL import Image

        from aescore.data.thumbs import make_thumbnail

        jpeg = make_thumbnail(Image.fromarray(photo.image), edge=self.needs.image_size or 512)
        return {"thumbnail": base64.b64encode(jpeg).decode("ascii")}


class RegionsCheck(Check):
    """The model's per-region logit map (for the report's overlay); models without one give None."""

    name = "regions"
    description = "per-region map of the model's logit (MPA: the head at every location)"
    needs = Needs(outputs=frozenset({"region_map"}))
    fields = (Field("region_map", FieldKind.HIDDEN, "rows of per-region logits"),)
    model_dependent = True
    report = True

    def compute(self, photo: PhotoData) -> dict[str, Any]:
        regions = photo.outputs.get("region_map")
        if regions is None:
            return {"region_map": None}
        return {"region_map": [[round(float(v), 3) for v in row] for row in regions]}


class ReasonsCheck(Check):
    """Which fault the model sees (``--reasons``): the probability of every kind of
    :data:`~aescore.data.fault_kinds.FAULT_KINDS` and the most likely one. Models with a reasons head
    only (the run refuses others with one line)."""

    name = "reasons"
    description = "the model's probability of each kind of fault, and the most likely one"
    needs = Needs(outputs=frozenset({"faults"}))
    fields = (
        Field("top_fault", FieldKind.TEXT, "the most likely fault when its probability is >= 0.5, else none "
              "(with the faces check: eyes_closed or face_soft first, aescore.cull.people)",
              badge=True, filter="reason"),
        Field("faults", FieldKind.OBJECT, "fault kind -> probability, every kind present"),
    )
    model_dependent = True
    report = True
    flag = "--reasons"
    flag_help = "Add the fault the model sees (top fault column; every kind's probability in json/jsonl/csv) (= --check reasons)."

    def compute(self, photo: PhotoData) -> dict[str, Any]:
        from aescore.data.fault_kinds import FAULT_KINDS

        probs = [float(p) for p in photo.outputs["faults"]]
        faults = {kind: round(p, 4) for kind, p in zip(FAULT_KINDS, probs)}
        best = max(faults, key=faults.__getitem__)
        return {"top_fault": best if faults[best] >= HIGH_THRESHOLD else "none", "faults": faults}


for _check in (ScoreCheck(), ExifCheck(), CaptureCheck(), ThumbnailCheck(), RegionsCheck(), ReasonsCheck()):
    register_check(_check)
