"""Device choice (placeholder until the engine branch's module is merged)."""

from __future__ import annotations

from aescore.errors import AescoreError


def resolve_device(spec: str = "auto") -> str:
    """``auto`` -> cuda if available, else mps, else cpu; an explicit unavailable device is an error."""
    import torch

    spec = spec.lower()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else ("mps" if mps else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise AescoreError("no CUDA GPU is available to PyTorch")
    if spec == "mps" and not mps:
        raise AescoreError("Apple MPS is not available to PyTorch")
    return spec
