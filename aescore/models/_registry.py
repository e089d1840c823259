"""A small timm-style model registry: names map to constructor functions."""

from __future__ import annotations

from typing import Any, Callable

from aescore.errors import ConfigError

_MODEL_FNS: dict[str, Callable[..., Any]] = {}


def register_model(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: register ``fn`` under its own name as a model constructor."""
    _MODEL_FNS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    _ensure_loaded()
    return sorted(_MODEL_FNS)


def create_model(name: str, **kwargs: Any) -> Any:
    """Build the registered model ``name`` with ``kwargs``.

    The returned module records ``arch_name`` and ``arch_args`` (the JSON-serialisable kwargs),
    which the weights format stores in the model card so the same model can be rebuilt on load.
    """
    _ensure_loaded()
    if name not in _MODEL_FNS:
        raise ConfigError("model", f"must be one of {', '.join(sorted(_MODEL_FNS))}, not {name!r}")
    model = _MODEL_FNS[name](**kwargs)
    model.arch_name = name
    model.arch_args = {k: v for k, v in kwargs.items() if k not in _NOT_ARCH_ARGS}
    return model


# Loading-time options, not part of the architecture: never stored in a model card.
_NOT_ARCH_ARGS = {"pretrained", "backbone_weights"}


def _ensure_loaded() -> None:
    # Importing the model modules runs their @register_model decorators.
    from aescore.models import faultnet, mpa, personal, rgnet  # noqa: F401
