"""Trained weights on disk: ``.safetensors`` + a JSON model card beside it, and training checkpoints.

A model is shipped as ``NAME.safetensors`` (the state dict, never pickled) plus ``NAME.json``, its
card: architecture and arguments (to rebuild it with :func:`aescore.models.create_model`),
preprocessing, what the network can give (``capabilities``), training data and command, measured
metrics, the weights' sha256, aescore version and date. Loading verifies the sha256 and the
architecture before any tensor reaches a model.

One module per concern; import the names from here (``from aescore.weights import read_card``):

* :mod:`~aescore.weights.card`: reading, checking and writing model cards; :func:`card_capabilities`.
* :mod:`~aescore.weights.files`: :func:`save_weights` / :func:`load_weights` (``.safetensors``);
  :func:`save_head` / :func:`load_head` (a head-only personal model, NumPy only).
* :mod:`~aescore.weights.verified`: the sha256 of verified files, remembered per file state in
  ``$XDG_CACHE_HOME/aescore/verified.json``, so the default is hashed once, not on every run.
* :mod:`~aescore.weights.checkpoints`: training checkpoints (``torch.load(weights_only=True)``).
* :mod:`~aescore.weights.lookup`: the folders searched and ``--model`` turned into a file
  (:func:`resolve_model`); a head-only personal model's base (:func:`resolve_base`).
* :mod:`~aescore.weights.config`: the default model (shipped, or the user's choice in
  ``$XDG_CONFIG_HOME/aescore/config.json``).

Layers: card, verified and checkpoints need nothing else here; files builds on card and
verified; lookup on card; config on lookup. Loading a model *for a run* (runtime, device,
preparation) is :func:`aescore.inference.loading.open_model`'s, on top of these.
"""

from aescore.fsutil import file_sha256
from aescore.weights.card import CARD_FORMAT, card_capabilities, check_card, has_reasons_head, head_only_base, read_card, write_card
from aescore.weights.checkpoints import load_checkpoint, save_checkpoint
from aescore.weights.config import (
    DEFAULT_FILE, config_path, configured_default, default_source, default_weights_path, set_default_model,
)
from aescore.weights.files import load_head, load_weights, save_head, save_weights
from aescore.weights.lookup import (
    WEIGHTS_ENV, AmbiguousModelError, ModelEntry, UnknownModelError, list_available, list_models_found, name_clashes,
    resolve_base, resolve_model, shipped_weights_dirs, user_models_dir, weights_dirs,
)
from aescore.weights.verified import read_verified, verified_cache_path

__all__ = [
    "CARD_FORMAT",
    "DEFAULT_FILE",
    "WEIGHTS_ENV",
    "AmbiguousModelError",
    "ModelEntry",
    "UnknownModelError",
    "card_capabilities",
    "check_card",
    "config_path",
    "configured_default",
    "default_source",
    "default_weights_path",
    "file_sha256",
    "has_reasons_head",
    "head_only_base",
    "list_available",
    "list_models_found",
    "load_checkpoint",
    "load_head",
    "load_weights",
    "name_clashes",
    "read_card",
    "read_verified",
    "resolve_base",
    "resolve_model",
    "save_checkpoint",
    "save_head",
    "save_weights",
    "set_default_model",
    "shipped_weights_dirs",
    "user_models_dir",
    "verified_cache_path",
    "weights_dirs",
    "write_card",
]
