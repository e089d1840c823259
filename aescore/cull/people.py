"""How culling uses the faces check: the rules, in one place.

Every rule reads the ``people`` field of :mod:`aescore.checks.faces`, which speaks for a photo's
*main* faces (those at least half the size of the largest judged face: a passer-by blinking behind
the subject does not count), and applies only when that check ran for the photo (the field is
there); without it culling is what it always was.

* **Best of a burst** (:func:`blocked_from_best`, used by :func:`aescore.cull.group_bursts`): a frame
  whose main faces have closed eyes is never its burst's best while a frame of the same burst has
  none; among frames that all have closed eyes, the best score wins as before.
* **Star cap** (:func:`star_cap`, used by :func:`aescore.cull.assign_stars`): a frame whose main
  faces have closed eyes or a soft face gets at most :data:`FACE_CAP_STARS` stars (its percentile
  band otherwise; a rejection stays a rejection). ``--no-face-cap`` turns the cap off.
* **Reject** (``--reject-closed-eyes``): such a frame gets -1 (rejected), whatever its score.
* **Reasons** (:func:`combine_reasons`): with ``--reasons``, a frame whose main faces have closed eyes
  reports ``eyes_closed`` as its ``top_fault``; else one with a soft face reports ``face_soft``; else
  the network's own top fault stands. The face verdicts come first because they are about the
  subject, which the network (trained on whole-frame faults) does not look at, and a blink is the
  one fault no edit repairs; the network's fault probabilities (``faults``) are left as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aescore.checks.faces import EYES_CLOSED, SOFT_FACE
from aescore.inference.stars import REJECTED

__all__ = [
    "EYES_CLOSED_REASON", "FACE_CAP_STARS", "FACE_SOFT_REASON", "blocked_from_best", "combine_reasons",
    "eyes_closed", "face_reason", "face_soft", "faces_ran", "star_cap",
]

#: The most stars a frame with closed eyes or a soft face (main faces) gets.
FACE_CAP_STARS = 2
#: ``top_fault`` values the faces check adds to the network's vocabulary (``--reasons``).
EYES_CLOSED_REASON = "eyes_closed"
FACE_SOFT_REASON = "face_soft"


def faces_ran(fields: Mapping[str, Any]) -> bool:
    """Whether the faces check's verdict is among a photo's fields."""
    return isinstance(fields.get("people"), str)


def _problems(fields: Mapping[str, Any]) -> set[str]:
    people = fields.get("people")
    return {part.strip() for part in people.split(",")} if isinstance(people, str) else set()


def eyes_closed(fields: Mapping[str, Any]) -> bool:
    """Whether the photo's main faces have closed eyes (False when the faces check did not run)."""
    return EYES_CLOSED in _problems(fields)


def face_soft(fields: Mapping[str, Any]) -> bool:
    """Whether a main face of the photo is out of focus (False when the faces check did not run)."""
    return SOFT_FACE in _problems(fields)


def face_reason(fields: Mapping[str, Any]) -> str | None:
    """``eyes_closed``, else ``face_soft``, else None (see the module docstring for the order)."""
    if eyes_closed(fields):
        return EYES_CLOSED_REASON
    if face_soft(fields):
        return FACE_SOFT_REASON
    return None


def blocked_from_best(photos: Sequence[Any]) -> list[bool] | None:
    """Per photo: closed eyes keep it from being its burst's best while another frame has none
    (:func:`aescore.inference.bursts.best_of_groups`'s ``blocked``); None when no photo has the
    faces check's fields."""
    if not any(faces_ran(p.fields) for p in photos):
        return None
    return [eyes_closed(p.fields) for p in photos]


def star_cap(fields: Mapping[str, Any], face_cap: bool = True, reject_closed_eyes: bool = False) -> int | None:
    """The most stars the faces allow a photo: -1 (rejected) for closed eyes with
    ``reject_closed_eyes``, :data:`FACE_CAP_STARS` for closed eyes or a soft face with ``face_cap``,
    else None (no cap)."""
    if reject_closed_eyes and eyes_closed(fields):
        return REJECTED
    if face_cap and (eyes_closed(fields) or face_soft(fields)):
        return FACE_CAP_STARS
    return None


def combine_reasons(photos: Sequence[Any]) -> None:
    """Set ``top_fault`` to the face reason of each photo that has one and has the reasons check's
    fields (the network's ``faults`` are kept)."""
    for photo in photos:
        reason = face_reason(photo.fields)
        if reason is not None and "top_fault" in photo.fields:
            photo.fields["top_fault"] = reason
