"""The check interface and its registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable

from aescore.errors import AescoreError


class FieldKind(str, Enum):
    """How a field is rendered: scalars go to every format, objects to JSON/JSONL (and CSV as JSON
    text), hidden fields to no output (they feed other steps, e.g. burst grouping, the report)."""

    NUMBER = "number"
    TEXT = "text"
    FLAG = "flag"
    OBJECT = "object"
    HIDDEN = "hidden"


@dataclass(frozen=True)
class Field:
    """One named value a check computes per photo, and how the contact sheet shows it.

    ``badge``: the card shows the value (``⚠ value``) when it is set — not None, empty, ``"none"``,
    0 or false. ``filter``: the page offers a filter by this field's values, labelled with this
    text (its form control gets that id).
    """

    name: str
    kind: FieldKind
    description: str
    places: int = 4  # decimals of a NUMBER in text formats
    badge: bool = False
    filter: str | None = None


@dataclass(frozen=True)
class Needs:
    """What a check reads: an RGB array of the photo with its long edge at most ``image_size``
    pixels (decoded once per run, shared with the network input), network outputs by name
    (``p_high``, ``embedding``, ``region_map``), and the photo's EXIF."""

    image_size: int | None = None
    outputs: frozenset[str] = frozenset()
    exif: bool = False


@dataclass
class PhotoData:
    """Everything a check may read about one photo (only what it declared in :class:`Needs` is set).

    ``image`` is a reduced copy; ``size`` is the upright photo's own ``(width, height)`` in pixels
    (before JPEG draft decoding or any scaling: :class:`~aescore.data.images.Decoded`), set with
    ``image``. A box at ``image``'s scale times ``size / image``'s size is in the photo's pixels.
    """

    path: str
    image: Any = None  # uint8 numpy [H, W, 3]
    outputs: dict[str, Any] = field(default_factory=dict)
    size: tuple[int, int] | None = None
    _exif: Any = None
    _exif_reader: Callable[[str], Any] | None = None

    @property
    def exif(self) -> Any:
        """The photo's :class:`~aescore.inference.exif.ExifInfo`, read once and shared by all checks."""
        if self._exif is None:
            from aescore.inference.exif import read_exif

            self._exif = (self._exif_reader or read_exif)(self.path)
        return self._exif


class Check:
    """Base class of a check. Subclasses set the class attributes and implement :meth:`compute`.

    ``model_dependent``: its fields change with the weights or recipe (then the cache key holds
    them). ``cached``: store its fields in the check cache (off for checks cheaper than a lookup,
    e.g. ones that only reformat an output that is cached already). ``report``: the contact sheet
    runs it (when the model gives the outputs it needs), whether or not the run asked for it.
    ``flag``/``flag_help``: a short command-line flag of its own (``--exif``) that score, rank and
    report offer as an alias of ``--check NAME``.
    """

    name: str = ""
    version: int = 1
    description: str = ""
    needs: Needs = Needs()
    fields: tuple[Field, ...] = ()
    model_dependent: bool = False
    cached: bool = True
    report: bool = False
    flag: str | None = None
    flag_help: str = ""

    @property
    def visible(self) -> bool:
        """Whether any of its fields is printed (checks of hidden fields only feed other steps)."""
        return any(f.kind is not FieldKind.HIDDEN for f in self.fields)

    def compute(self, photo: PhotoData) -> dict[str, Any]:
        """The fields of one photo, keyed by :attr:`Field.name` (JSON-serialisable values)."""
        raise NotImplementedError

    def cache_key(self, model_key: str) -> str:
        """Cache key of this check's results: name, version and, if model-dependent, the model."""
        base = f"{self.name}/v{self.version}"
        return f"{base}@{model_key}" if self.model_dependent else base


class UnknownCheckError(AescoreError):
    """A check name that is not registered."""

    exit_code = 2


_CHECKS: dict[str, Check] = {}


def register_check(check: Check) -> Check:
    """Add ``check`` to the registry under its name (a later registration replaces an earlier one)."""
    if not check.name:
        raise ValueError("a check needs a name")
    _CHECKS[check.name] = check
    return check


_loaded = False


def _ensure_builtin() -> None:
    """Register every check module: each module of this package (a new built-in check is one new
    file here), then those of installed plugins (entry point group ``aescore.checks``, each naming
    a module). Importing a module runs its :func:`register_check` calls."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib
    import pkgutil
    from importlib.metadata import entry_points

    import aescore.checks as package

    for module in sorted(m.name for m in pkgutil.iter_modules(package.__path__)):
        if module != "base":
            importlib.import_module(f"{package.__name__}.{module}")
    for entry in entry_points(group="aescore.checks"):
        try:
            entry.load()
        except Exception as err:  # noqa: BLE001 - a broken plugin must not stop aescore
            import warnings

            warnings.warn(f"check plugin {entry.name!r} could not be loaded: {err}", stacklevel=2)


def get_check(name: str) -> Check:
    """The registered check ``name``."""
    _ensure_builtin()
    if name not in _CHECKS:
        raise UnknownCheckError(f"unknown check {name!r}; available: {', '.join(sorted(_CHECKS))}")
    return _CHECKS[name]


def available_checks() -> list[Check]:
    """Every registered check, by name."""
    _ensure_builtin()
    return [_CHECKS[n] for n in sorted(_CHECKS)]
