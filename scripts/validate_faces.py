"""Measure the ``faces`` check (:func:`aescore.faces.analyse`) on real labelled photos; print JSON.

Data (neither is in this repository; both are for measuring only):

``--yale DIR``
    The Yale Face Database (165 grey 320 x 243 images, 15 subjects x 11 conditions; research use):
    ``sleepy`` = both eyes closed, ``wink`` = one eye closed, every other condition = eyes open.
``--photos DIR``
    The 1000 ImageNet validation photos of ``/work/shared/photos``, with the hand labels of
    ``scripts/validate_faces_labels.json`` (every human face >= 60 px, its eyes and focus; see its
    ``about``).

Each set is split in two: **calibration** (Yale subjects with odd numbers; ImageNet photos whose
file name's sha1 starts with an even byte) and **report** (the rest). The thresholds in
:mod:`aescore.faces.judge` were chosen by ``--calibrate`` from the calibration half alone, with the
rules below; the report half was never used to choose them. Both halves are printed.

Calibration rules (``--calibrate``):

* ``FACE_MIN_SCORE``: of 0.50, 0.55, ... 0.90, the highest that finds all but at most one of the
  labelled faces found at the best of them (the goal is recall; fewer dogs counted is second).
* ``EYE_CLOSED``: of 0.060 ... 0.200 (step 0.005), the middle of the range maximising
  TPR(sleepy) - 5 x FPR(open eyes) on the wider eye's openness (false "closed" weigh 5x: the goal
  is <= 3 % against >= 90 %); ``EYE_OPEN`` = ``EYE_CLOSED`` + 0.02 (a dead band, unknown).
* ``MIN_SCLERA``: of 0.1 ... 0.6, the largest value that turns <= 2 % of open eyes unknown.
* ``FOCUS_SOFT``: halfway between the 97.5th percentile of sharp faces' softness and the 5th
  percentile of the same faces blurred (sigma 2 at the face scale); ``FOCUS_SHARP`` = it - 0.05.
* ``JUDGE_MIN_SCORE``: of ``FACE_MIN_SCORE`` ... 0.95 (step 0.05), the lowest at which no non-face
  detection gets a "closed" or "soft" verdict.

Measures (default): eyes per Yale condition and per ImageNet eye label (share closed / open /
unknown / missed); faces found by size (share of labelled faces found at ``FACE_MIN_SCORE``) and
non-faces counted; focus on synthetic cases made from each labelled face whose focus is judged in
its own photo (softness measured):
the face blurred with a Gaussian of sigma 2 px at the face scale (eye span brought to
``judge.FOCUS_SPAN`` = 64 px, never enlarged; i.e. sigma = 2 x max(1, span / 64) photo px), inside
an ellipse 1.25 x the face box, feathered, the rest untouched; the same at the milder 128 px scale;
and the face kept while everything else is blurred with sigma 4 at the face scale. Timing: ms per
photo of :func:`analyse` on the ImageNet photos (~500 px; the models' sessions already open), and on
the people photos enlarged to 1600 px (cost only).

Usage: ``.venv/bin/python scripts/validate_faces.py [--calibrate] [--yale DIR] [--photos DIR]``.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import json
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aescore.faces import analyse, judge
from aescore.faces.detect import Detection, detect
from aescore.faces.landmarks import eye, face_mesh

HERE = Path(__file__).resolve().parent
YALE_OPEN = ("centerlight", "glasses", "happy", "leftlight", "noglasses", "normal", "rightlight", "sad", "surprised")
SIZE_BINS = ((60, 80), (80, 120), (120, 10_000))


# -- data ----------------------------------------------------------------------------------------------
def yale_split(name: str) -> str:
    """``subject07.sleepy`` -> calibration (odd subject number) or report (even)."""
    return "calibration" if int(name[len("subject"):len("subject") + 2]) % 2 else "report"


def photo_split(name: str) -> str:
    """Calibration when the sha1 of the file name starts with an even byte, else report."""
    return "calibration" if hashlib.sha1(name.encode()).digest()[0] % 2 == 0 else "report"


def load_rgb(path: str) -> np.ndarray:
    return np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))


def iou(a: Any, b: Any) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def best_match(items: list[Any], box: Any, key: Any = lambda f: f.box) -> Any:
    """The item overlapping ``box`` by IoU >= 0.3 with the highest score/confidence, else None."""
    hits = [it for it in items if iou(key(it), box) >= 0.3]
    return max(hits, key=lambda it: getattr(it, "confidence", getattr(it, "score", 0.0))) if hits else None


def face_mask(shape: tuple[int, ...], box: Any, grow: float = 1.25, feather: float = 0.12) -> np.ndarray:
    """1 inside an ellipse ``grow`` x the box, 0 outside, a soft edge ``feather`` of its radius wide."""
    h, w = shape[:2]
    left, top, right, bottom = box
    cx, cy = (left + right) / 2, (top + bottom) / 2
    ax, ay = max(1.0, (right - left) / 2 * grow), max(1.0, (bottom - top) / 2 * grow)
    yy, xx = np.mgrid[0:h, 0:w]
    d = np.sqrt(((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2)
    return np.clip((1.0 - d) / feather + 0.5, 0.0, 1.0).astype(np.float32)


def blur(rgb: np.ndarray, sigma: float) -> np.ndarray:
    return np.stack([judge.gaussian_blur(rgb[..., c].astype(np.float64), sigma) for c in range(3)], axis=-1)


def composite(mask: np.ndarray, inside: np.ndarray, outside: np.ndarray) -> np.ndarray:
    m = mask[..., None]
    return np.clip(m * inside + (1 - m) * outside + 0.5, 0, 255).astype(np.uint8)


def variants(rgb: np.ndarray, box: Any, span: float) -> dict[str, np.ndarray]:
    """The synthetic focus cases of one face (see the module docstring)."""
    mask = face_mask(rgb.shape, box)
    sharp = rgb.astype(np.float64)
    return {
        "face_blurred": composite(mask, blur(rgb, 2.0 * max(1.0, span / judge.FOCUS_SPAN)), sharp),
        "face_blurred_mild": composite(mask, blur(rgb, 2.0 * max(1.0, span / 128.0)), sharp),
        "background_blurred": composite(mask, sharp, blur(rgb, 4.0 * max(1.0, span / judge.FOCUS_SPAN))),
    }


def shares(values: list[str], keys: tuple[str, ...]) -> dict[str, Any]:
    n = len(values)
    c = Counter(values)
    return {"n": n, **{k: round(c[k] / n, 3) if n else None for k in keys}}


# -- report mode (the shipped analyse) ------------------------------------------------------------------
def measure(yale_dir: str, photos_dir: str, labels: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"calibration": {}, "report": {}}
    analyse(np.zeros((64, 64, 3), np.uint8))  # open the sessions outside the timings

    # Yale: eyes, and whether the face is found
    yale: dict[str, dict[str, list[str]]] = {"calibration": {}, "report": {}}
    for path in sorted(glob.glob(os.path.join(yale_dir, "subject*"))):
        name = os.path.basename(path)
        cond = name.split(".")[1]
        faces = analyse(load_rgb(path))
        verdict = faces[0].eyes if faces else "missed"
        yale[yale_split(name)].setdefault(cond, []).append(verdict)
    keys = ("closed", "open", "unknown", "missed")
    for half, conds in yale.items():
        open_eyes = [v for c in YALE_OPEN for v in conds.get(c, [])]
        out[half]["yale_eyes"] = {
            "closed_eyes (sleepy)": shares(conds.get("sleepy", []), keys),
            "one_eye_closed (wink)": shares(conds.get("wink", []), keys),
            "open_eyes (9 other conditions)": shares(open_eyes, keys),
            "per_condition": {c: shares(v, keys) for c, v in sorted(conds.items())},
        }

    # ImageNet: every photo (detection, non-faces, timing), then the labelled faces
    by_file: dict[str, list[dict[str, Any]]] = {}
    for f in labels["faces"]:
        by_file.setdefault(f["file"], []).append(f)
    ambiguous: dict[str, list[Any]] = {}
    for a in labels["ambiguous"]:
        ambiguous.setdefault(a["file"], []).append(a["box"])
    times: list[float] = []
    found: dict[str, dict[str, Any]] = {"calibration": {}, "report": {}}
    false_faces = {"calibration": 0, "report": 0}
    false_flags: dict[str, list[str]] = {"calibration": [], "report": []}
    photos = {"calibration": 0, "report": 0}
    eyes: dict[str, dict[str, list[str]]] = {"calibration": {}, "report": {}}
    focus: dict[str, dict[str, list[str]]] = {"calibration": {}, "report": {}}
    for name in sorted(os.listdir(photos_dir)):
        half = photo_split(name)
        photos[half] += 1
        rgb = load_rgb(os.path.join(photos_dir, name))
        t0 = time.perf_counter()
        faces = analyse(rgb)
        times.append((time.perf_counter() - t0) * 1000)
        for face in faces:
            size = max(face.box[2] - face.box[0], face.box[3] - face.box[1])
            known = [f["box"] for f in by_file.get(name, [])] + ambiguous.get(name, [])
            if any(iou(face.box, b) >= 0.3 for b in known):
                continue
            if size >= 60:
                false_faces[half] += 1
            if face.eyes == "closed" or face.focus == "soft":
                # a badge on something that is not a labelled face (>= 60 px: a non-face; smaller: unlabelled)
                false_flags[half].append(f"{name} {size:.0f}px eyes={face.eyes} focus={face.focus}")
        for label in by_file.get(name, []):
            hit = best_match(faces, label["box"])
            found[half][f"{name}:{label['box']}"] = (label["size"], hit is not None)
            eyes[half].setdefault(label["eyes"], []).append(hit.eyes if hit else "missed")
            if label["focus"] != "not-rated":
                focus[half].setdefault(f"original, labelled {label['focus']}", []).append(hit.focus if hit else "missed")
            if hit is None or hit.softness is None:
                continue  # focus not judged in its own photo (turned away, too small, ...): no synthetic case
            for kind, image in variants(rgb, hit.box, hit.eye_span).items():
                if kind == "background_blurred" and label["focus"] != "sharp":
                    continue  # only faces sharp in the original stay "sharp before a blurred background"
                again = best_match(analyse(image), label["box"])
                focus[half].setdefault(kind, []).append(again.focus if again else "missed")
    for half in ("calibration", "report"):
        sizes = {}
        for lo, hi in SIZE_BINS:
            hits = [ok for size, ok in found[half].values() if lo <= size < hi]
            sizes[f"{lo}-{hi if hi < 10_000 else 'up'} px"] = {"n": len(hits), "found": round(sum(hits) / len(hits), 3) if hits else None}
        big = [ok for size, ok in found[half].values() if size >= 80]
        out[half]["imagenet_faces_found"] = {
            ">=80 px": {"n": len(big), "found": round(sum(big) / len(big), 3) if big else None},
            "by_size": sizes,
            "non_faces_counted (>=60 px)": false_faces[half],
            "closed_or_soft_verdicts_on_unlabelled_detections": false_flags[half],
            "photos": photos[half],
        }
        out[half]["imagenet_eyes"] = {k: shares(v, keys) for k, v in sorted(eyes[half].items())}
        out[half]["imagenet_focus"] = {k: shares(v, ("soft", "sharp", "unknown", "missed")) for k, v in sorted(focus[half].items())}

    # timing on 1600 px arrays: the people photos enlarged (cost only; their content is ~500 px)
    big_times = []
    for name in sorted(by_file)[:30]:
        img = Image.fromarray(load_rgb(os.path.join(photos_dir, name)))
        k = 1600 / max(img.size)
        arr = np.asarray(img.resize((round(img.width * k), round(img.height * k)), Image.Resampling.BILINEAR))
        t0 = time.perf_counter()
        analyse(arr)
        big_times.append((time.perf_counter() - t0) * 1000)
    out["timing_ms"] = {
        "imagenet_photos (~500 px)": {"n": len(times), "median": round(statistics.median(times), 1),
                                      "p90": round(float(np.percentile(times, 90)), 1), "max": round(max(times), 1)},
        "people_photos_at_1600_px": {"n": len(big_times), "median": round(statistics.median(big_times), 1),
                                     "p90": round(float(np.percentile(big_times, 90)), 1)},
    }
    return out


# -- calibration mode -----------------------------------------------------------------------------------
@contextlib.contextmanager
def thresholds(**values: float) -> Iterator[None]:
    """Set :mod:`aescore.faces.judge` constants for the duration (the judge reads them at call time)."""
    old = {k: getattr(judge, k) for k in values}
    for k, v in values.items():
        setattr(judge, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(judge, k, v)


def reading(img: Image.Image, det: Detection) -> dict[str, Any]:
    """Everything the verdicts depend on, for re-judging under other thresholds."""
    mesh = face_mesh(img, det)
    right, left = eye(img, mesh, right=True), eye(img, mesh, right=False)
    return {"det": det, "mesh": mesh, "right": right, "left": left, "soft": judge.softness(img, mesh),
            "size": img.size}


def verdicts(r: dict[str, Any], geometric_only: bool = False) -> tuple[str, str]:
    """(eyes, focus) of a reading under the judge's current constants (score gate skipped when
    ``geometric_only``)."""
    det, mesh = r["det"], r["mesh"]
    ok = (mesh.presence >= judge.MIN_PRESENCE and mesh.eye_span >= judge.MIN_EYE_SPAN and mesh.yaw <= judge.MAX_YAW
          and (geometric_only or det.score >= judge.JUDGE_MIN_SCORE))
    if not ok:
        return "unknown", "unknown"
    return judge.eye_state(r["right"], r["left"], *r["size"]), judge.focus_state(r["soft"])


def calibrate(yale_dir: str, photos_dir: str, labels: dict[str, Any]) -> dict[str, Any]:
    half = "calibration"
    # eyes: Yale (odd subjects) + ImageNet open / closed faces of the calibration photos
    sleepy, open_eyes = [], []
    for path in sorted(glob.glob(os.path.join(yale_dir, "subject*"))):
        name = os.path.basename(path)
        if yale_split(name) != half:
            continue
        rgb = load_rgb(path)
        dets = detect(rgb, min_score=0.5)
        if not dets:
            continue
        r = reading(Image.fromarray(rgb), dets[0])
        cond = name.split(".")[1]
        if cond == "sleepy":
            sleepy.append(r)
        elif cond in YALE_OPEN:
            open_eyes.append(r)
    by_file: dict[str, list[dict[str, Any]]] = {}
    for f in labels["faces"]:
        by_file.setdefault(f["file"], []).append(f)
    ambiguous: dict[str, list[Any]] = {}
    for a in labels["ambiguous"]:
        ambiguous.setdefault(a["file"], []).append(a["box"])
    sharp_faces, blurred_faces, non_faces, det_rows = [], [], [], []
    for name in sorted(os.listdir(photos_dir)):
        if photo_split(name) != half:
            continue
        rgb = load_rgb(os.path.join(photos_dir, name))
        img = Image.fromarray(rgb)
        dets = detect(rgb, min_score=0.5)
        known = [f["box"] for f in by_file.get(name, [])]
        for d in dets:
            if d.size >= 60 and not any(iou(d.box, b) >= 0.3 for b in known + ambiguous.get(name, [])):
                det_rows.append(("false", d.score))
                non_faces.append(reading(img, d))
        for label in by_file.get(name, []):
            d = best_match(dets, label["box"])
            det_rows.append(("face", d.score if d else 0.0))
            if d is None:
                continue
            r = reading(img, d)
            if label["eyes"] == "open":
                open_eyes.append(r)
            elif label["eyes"] == "closed":
                sleepy.append(r)
            if label["focus"] == "sharp" and r["soft"] is not None:
                sharp_faces.append(r)
                blurred = variants(rgb, d.box, r["mesh"].eye_span)["face_blurred"]
                d2 = best_match(detect(blurred, min_score=0.5), label["box"])
                if d2 is not None:
                    r2 = reading(Image.fromarray(blurred), d2)
                    if r2["soft"] is not None:
                        blurred_faces.append(r2)
    proposal: dict[str, float] = {}
    # FACE_MIN_SCORE
    grid = [round(0.5 + 0.05 * i, 2) for i in range(9)]
    found = {t: sum(1 for k, s in det_rows if k == "face" and s >= t) for t in grid}
    counted_false = {t: sum(1 for k, s in det_rows if k == "false" and s >= t) for t in grid}
    proposal["FACE_MIN_SCORE"] = max(t for t in grid if found[t] >= max(found.values()) - 1)

    def geometric(rs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in rs if r["mesh"].presence >= judge.MIN_PRESENCE and r["mesh"].eye_span >= judge.MIN_EYE_SPAN
                and r["mesh"].yaw <= judge.MAX_YAW]

    closed_wide = [max(r["right"].openness, r["left"].openness) for r in geometric(sleepy)]
    open_wide = [max(r["right"].openness, r["left"].openness) for r in geometric(open_eyes)]
    grid = [round(0.06 + 0.005 * i, 3) for i in range(29)]
    score = {t: np.mean([v < t for v in closed_wide]) - 5 * np.mean([v < t for v in open_wide]) for t in grid}
    top = max(score.values())
    best = [t for t in grid if score[t] == top]
    proposal["EYE_CLOSED"] = round((best[0] + best[-1]) / 2, 3)
    proposal["EYE_OPEN"] = round(proposal["EYE_CLOSED"] + 0.02, 3)
    # MIN_SCLERA: open eyes (both read open) turned unknown by the sclera test
    opened = [r for r in geometric(open_eyes) if min(r["right"].openness, r["left"].openness) >= proposal["EYE_OPEN"]]
    whites = [max([s for s in (r["right"].sclera, r["left"].sclera) if s is not None], default=-1.0) for r in opened]
    proposal["MIN_SCLERA"] = max(t for t in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6) if np.mean([w < t for w in whites]) <= 0.02)
    # focus
    sharp_soft = [r["soft"] for r in geometric(sharp_faces)]
    blurred_soft = [r["soft"] for r in geometric(blurred_faces)]
    proposal["FOCUS_SOFT"] = round((float(np.percentile(sharp_soft, 97.5)) + float(np.percentile(blurred_soft, 5))) / 2, 2)
    proposal["FOCUS_SHARP"] = round(proposal["FOCUS_SOFT"] - 0.05, 2)
    # JUDGE_MIN_SCORE: no closed / soft verdict on a non-face
    with thresholds(**{k: v for k, v in proposal.items() if k != "FACE_MIN_SCORE"}):
        flagged = [r["det"].score for r in non_faces if "closed" in verdicts(r, True) or "soft" in verdicts(r, True)]
    grid = [round(proposal["FACE_MIN_SCORE"] + 0.05 * i, 2) for i in range(10) if proposal["FACE_MIN_SCORE"] + 0.05 * i <= 0.951]
    proposal["JUDGE_MIN_SCORE"] = min((t for t in grid if not any(s >= t for s in flagged)), default=0.95)
    return {
        "proposed": proposal,
        "shipped": {k: getattr(judge, k) for k in proposal},
        "faces_found_by_score": {str(t): [found[t], counted_false[t]] for t in found},
        "sets": {"closed_eyes": len(closed_wide), "open_eyes": len(open_wide), "sharp_faces": len(sharp_soft),
                 "blurred_faces": len(blurred_soft), "non_faces": len(non_faces),
                 "labelled_faces": sum(1 for k, _ in det_rows if k == "face")},
        "readings": {
            "closed_wider_eye": sorted(round(v, 3) for v in closed_wide),
            "open_wider_eye_lowest": sorted(round(v, 3) for v in open_wide)[:8],
            "sharp_softness_highest": sorted(round(v, 3) for v in sharp_soft)[-5:],
            "blurred_softness_lowest": sorted(round(v, 3) for v in blurred_soft)[:5],
            "non_face_scores_flagged": sorted(round(s, 3) for s in flagged),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--yale", default="/tmp/faces/data/yalefaces")
    parser.add_argument("--photos", default="/work/shared/photos")
    parser.add_argument("--labels", default=str(HERE / "validate_faces_labels.json"))
    parser.add_argument("--calibrate", action="store_true", help="propose thresholds from the calibration half")
    args = parser.parse_args()
    labels = json.loads(Path(args.labels).read_text())
    if args.calibrate:
        result = calibrate(args.yale, args.photos, labels)
    else:
        result = {"thresholds": {k: getattr(judge, k) for k in (
            "FACE_MIN_SCORE", "JUDGE_MIN_SCORE", "MIN_PRESENCE", "MIN_EYE_SPAN", "MAX_YAW", "EYE_CLOSED", "EYE_OPEN",
            "MIN_SCLERA", "FOCUS_SPAN", "REBLUR_SIGMA", "FOCUS_SOFT", "FOCUS_SHARP", "MIN_BAND_CONTRAST")},
            **measure(args.yale, args.photos, labels)}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
