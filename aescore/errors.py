"""Errors that the CLI turns into one clear stderr line and an exit code (no traceback)."""

from __future__ import annotations


class AescoreError(Exception):
    """A known, user-facing failure. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class UsageError(AescoreError):
    """Bad options or arguments (exit status 2)."""

    exit_code = 2


class WeightsError(AescoreError):
    """Weights or model card missing, tampered with, or of the wrong architecture."""


class DataError(AescoreError):
    """A dataset folder or file list that cannot be used."""


class ImageDecodeError(AescoreError):
    """One image could not be decoded; carries the path and a short reason.

    ``lasting``: whether the same bytes will fail the same way with the same decoder (a corrupt or
    unsupported file), so the failure may be remembered until the file changes. False for
    failures of the moment or of the machine: a vanished file, permissions, I/O errors, memory,
    a missing optional extra.
    """

    def __init__(self, path: object, reason: str, lasting: bool = True) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
        self.lasting = lasting

    def __reduce__(self) -> tuple[object, ...]:
        # Picklable with all three fields (decode workers may send it to the main process).
        return (type(self), (self.path, self.reason, self.lasting))
