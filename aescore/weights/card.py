"""Model cards: the JSON file beside every ``.safetensors`` (format, architecture and arguments,
recipe, capabilities, provenance, the weights' sha256): reading, checking and writing them, and
what a card says the network can give (:func:`card_capabilities`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from aescore.errors import WeightsError
from aescore.fsutil import atomic_write_text
from aescore.models.contract import Capabilities, personal_capabilities
from aescore.weights._json import read_small_json

CARD_FORMAT = "aescore.model-card/1"
_CARD_REQUIRED = ("architecture", "arch_args", "preprocess", "sha256")
_MAX_CARD_BYTES = 4 << 20


def pair_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(weights .safetensors, card .json)`` for either of the two paths."""
    p = Path(path).expanduser()
    if p.suffix == ".json":
        return p.with_suffix(".safetensors"), p
    if p.suffix == ".safetensors":
        return p, p.with_suffix(".json")
    raise WeightsError(f"{p}: expected a .safetensors weights file or its .json model card")


def card_structure(card_path: Path) -> dict[str, Any]:
    """The card's JSON with its format and required fields checked (values unchecked)."""
    if not card_path.is_file():
        raise WeightsError(f"model card not found: {card_path} (every .safetensors needs its .json card beside it)")
    try:
        card = read_small_json(card_path, _MAX_CARD_BYTES)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise WeightsError(f"{card_path}: not a readable model card ({exc})") from None
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        found = card.get("format") if isinstance(card, dict) else type(card).__name__
        raise WeightsError(f"{card_path}: not an aescore model card (format {found!r}, expected {CARD_FORMAT!r})")
    missing = [k for k in _CARD_REQUIRED if k not in card]
    if missing:
        raise WeightsError(f"{card_path}: model card lacks {', '.join(missing)}")
    if not isinstance(card["arch_args"], dict):
        raise WeightsError(f"{card_path}: model card field arch_args must be an object")
    return card


def read_card(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check the model card of ``path`` (the ``.json`` card or its ``.safetensors`` file).

    Raises :class:`WeightsError` (one line) when the card is missing, unreadable, of another
    format, or fails :func:`check_card`.
    """
    _, card_path = pair_paths(path)
    card = card_structure(card_path)
    check_card(card, card_path)
    return card


def check_card(card: dict[str, Any], where: str | os.PathLike[str] = "model card") -> None:
    """Refuse a card whose values would break scoring: raises :class:`WeightsError` naming the field.

    Checks: ``architecture`` a name, ``sha256`` 64 hex digits, ``capabilities`` (when there)
    an object of booleans, and the ``preprocess`` block as
    :meth:`aescore.data.transforms.Preprocess.from_card` parses it (finite mean/std, std > 0, a
    known eval mode, sizes in pixels).
    """

    def bad(field: str, why: str, value: Any) -> WeightsError:
        shown = json.dumps(value, allow_nan=True)
        return WeightsError(f"{where}: invalid model card: {field} {why} (found {shown[:60]})")

    if not isinstance(card.get("architecture"), str) or not card["architecture"]:
        raise bad("architecture", "must be a model name", card.get("architecture"))
    sha = card.get("sha256")
    if not _is_sha256(sha):
        raise bad("sha256", "must be 64 hexadecimal digits", sha)
    if "capabilities" in card:
        try:
            Capabilities.from_card(card["capabilities"])
        except ValueError as exc:
            raise bad("capabilities", str(exc), card["capabilities"]) from None
    if "head_only" in card:
        head_only = card["head_only"]
        base_name = head_only.get("base_model") if isinstance(head_only, dict) else None
        base_sha = head_only.get("base_sha256") if isinstance(head_only, dict) else None
        if not (isinstance(base_name, str) and base_name and _is_sha256(base_sha)):
            raise bad("head_only", "must be an object with base_model (a name) and base_sha256 (64 hexadecimal digits)", head_only)
        if card.get("architecture") != "personal_ranker":
            raise bad("architecture", "of a head-only model must be personal_ranker", card.get("architecture"))
    from aescore.data.transforms import Preprocess, RecipeError

    try:
        Preprocess.from_card(card.get("preprocess"))  # the one validator of the recipe
    except RecipeError as exc:
        raise WeightsError(f"{where}: invalid model card: {exc}") from None


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value.lower())


def head_only_base(card: dict[str, Any]) -> tuple[str, str] | None:
    """For a **head-only** personal model (``aescore learn`` without ``--fine-tune``: its
    ``.safetensors`` holds the personal head alone, and the network is its base model's), the base
    model's ``(name, sha256)`` from the card's ``head_only`` block; None for every other model.
    The block is checked by :func:`check_card`."""
    block = card.get("head_only")
    if not isinstance(block, dict):
        return None
    return str(block["base_model"]), str(block["base_sha256"]).lower()


def write_card(path: str | os.PathLike[str], card: dict[str, Any]) -> None:
    """Write a model card (``path``: the ``.json`` card or its ``.safetensors``) atomically, in the
    one layout every card has (indented UTF-8 JSON, a final newline)."""
    _, card_path = pair_paths(path)
    atomic_write_text(card_path, json.dumps(card, indent=2, ensure_ascii=False) + "\n")


# What each architecture of the registry declares (its class's ``capabilities``), for cards
# written before cards recorded them: the shipped ones, whose files are verified and never
# rewritten. Read by card_capabilities alone.
_DECLARED_BEFORE_CARDS_RECORDED: dict[str, Capabilities] = {
    "mpa_resnet18": Capabilities(embedding=True, region_map=True),
    "faultnet": Capabilities(embedding=True, region_map=True, faults=True, detail_views=True),
    "rgnet_densenet121": Capabilities(embedding=True, region_map=True),
}


def card_capabilities(card: dict[str, Any]) -> Capabilities:
    """What the card's network gives: the card's ``capabilities`` (recorded by
    :func:`aescore.weights.save_weights` from the model's class), or for a card written before
    cards recorded them, what its architecture declares. The one place that decides, e.g.,
    whether a model has a reasons head."""
    recorded = card.get("capabilities")
    if recorded is not None:
        return Capabilities.from_card(recorded)  # checked by check_card when the card was read
    return _derived_capabilities(card.get("architecture"), card.get("arch_args"))


def _derived_capabilities(arch: Any, args: Any) -> Capabilities:
    args = args if isinstance(args, dict) else {}
    if arch == "personal_ranker":  # aescore.models.personal: the base's, less what the head replaces
        return personal_capabilities(_derived_capabilities(args.get("base_architecture"), args.get("base_args")))
    declared = _DECLARED_BEFORE_CARDS_RECORDED.get(arch, Capabilities(embedding=True)) if isinstance(arch, str) else Capabilities()
    if arch == "rgnet_densenet121" and args.get("num_classes", 2) != 2:
        declared = Capabilities(embedding=True)  # a region map needs two classes
    return declared


def has_reasons_head(card: dict[str, Any]) -> bool:
    """Whether the card's network names faults (a ``faults`` output): see :func:`card_capabilities`."""
    return card_capabilities(card).faults
