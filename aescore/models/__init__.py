"""Model registry: ``create_model(name, **kwargs)`` and ``list_models()``."""

from aescore.models._registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
