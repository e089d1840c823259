"""Export a model's scoring form to the ONNX program that :mod:`aescore.inference.onnx_runtime`
runs without torch (issue 16). Used when a model is published (``scripts/export_onnx.py``)."""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from aescore.errors import WeightsError
from aescore.inference.onnx_runtime import ONNX_INPUTS, ONNX_OUTPUTS, Runtime
from aescore.models.contract import Capabilities, ModelInputs, ScoringModel

__all__ = ["export_onnx"]

_OPSET = 17
_TOLERANCE = 1e-4  # what issue 16 allows between the runtimes' scores


def export_outputs(capabilities: Capabilities) -> list[str]:
    """The program's outputs for a model of ``capabilities``: ``logits``, ``embedding`` and, where
    the model has them, ``faults`` (a reasons head) and ``region_map`` (the whole frame's
    per-region logits: the contact sheet's overlay) (:data:`~aescore.inference.onnx_runtime.ONNX_OUTPUTS`,
    in that order)."""
    return [name for name in ONNX_OUTPUTS if name == "logits" or name in capabilities.outputs()]


class ExportViews(nn.Module):
    """A model's scoring views as one graph: ``(whole[, crops]) -> (logits, embedding[, faults][,
    region_map])``, one call of the model contract (the crops pooled by the model itself)."""

    def __init__(self, model: ScoringModel, detail: bool) -> None:
        super().__init__()
        self.model, self.detail = model, detail
        self.outputs = export_outputs(model.capabilities)

    def forward(self, whole: torch.Tensor, crops: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        out = self.model.forward_outputs(ModelInputs(whole, crops if self.detail else None), self.outputs[1:])
        return tuple(getattr(out, name) for name in self.outputs)


def export_onnx(weights: str | os.PathLike[str], check_shapes: tuple[tuple[int, int], ...] = ((224, 298), (336, 224))) -> dict[str, Any]:
    """Export the model of ``weights`` (a name or file) to ``NAME.onnx`` beside its weights and
    record it in its card (``card["onnx"]``: file, sha256, the weights' sha256, opset); returns
    that block. Both files are written atomically.

    The graph is the scoring form (eval mode, BatchNorm folded) of the model's views: the whole
    frame ``[B, 3, H, W]`` (any batch and size) and, for a detail recipe, the crops ``[B, K, 3, c,
    c]``; outputs ``logits``, ``embedding`` and, where the model has them, ``faults`` logits (a
    reasons head) and ``region_map`` ``[B, h, w]`` (the whole frame's per-region logits). Before
    anything is written, the program runs under ONNX Runtime at ``check_shapes`` (a batch of 1,
    then 2) beside PyTorch; :class:`WeightsError` when an output differs by more than 1e-4.
    """
    import onnxruntime as ort

    from aescore.fsutil import atomic_write_bytes
    from aescore.inference.core import LoadedModel
    from aescore.inference.loading import open_model
    from aescore.weights import write_card

    loaded = open_model(weights, "cpu", Runtime.torch)
    assert isinstance(loaded, LoadedModel) and loaded.path is not None
    weights_path, card, recipe = loaded.path, loaded.card, loaded.preprocess
    wrapper = ExportViews(loaded.module, recipe.detail is not None).eval()
    crop_shape = () if recipe.detail is None else (recipe.detail.crops, 3, recipe.detail.size, recipe.detail.size)
    inputs = list(ONNX_INPUTS[: 2 if crop_shape else 1])
    outputs = wrapper.outputs

    def sample(batch: int, h: int, w: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
        whole = torch.randn(batch, 3, h, w, generator=gen)
        return (whole, torch.randn(batch, *crop_shape, generator=gen)) if crop_shape else (whole,)

    gen = torch.Generator().manual_seed(0)
    axes = {"whole": {0: "batch", 2: "height", 3: "width"}, "crops": {0: "batch"}, **{o: {0: "batch"} for o in outputs},
            "region_map": {0: "batch", 1: "regions_y", 2: "regions_x"}}
    buf = io.BytesIO()
    # The TorchScript-based exporter (dynamo=False): it traces the size-dependent "SAME" padding
    # of the plain Lite network into graph arithmetic, and needs only the onnx package (the
    # torch.export-based one needs onnxscript too). It warns that it is deprecated.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        # The region map's head-shape test is a constant of the weights, rightly traced as one
        # (the program is checked at two input shapes below).
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module="aescore.models.regions")
        torch.onnx.export(
            # torch types f as a path; the TorchScript exporter writes to a file object too
            wrapper, sample(1, *check_shapes[0], gen), buf,  # type: ignore[arg-type]
            dynamo=False, opset_version=_OPSET,
            input_names=inputs, output_names=outputs, dynamic_axes={k: v for k, v in axes.items() if k in inputs + outputs},
        )
    data = buf.getvalue()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    for batch, (h, w) in enumerate(check_shapes, start=1):
        xs = sample(batch, h, w, gen)
        with torch.no_grad():
            ref = wrapper(*xs)
        got = session.run(outputs, {n: x.numpy() for n, x in zip(inputs, xs)})
        shapes = [(name, g.shape, tuple(r.shape)) for name, g, r in zip(outputs, got, ref) if g.shape != tuple(r.shape)]
        if shapes:  # e.g. a size traced into the graph as a constant: the program would fit one photo shape only
            raise WeightsError(f"ONNX export of {weights_path.name}: output {shapes[0][0]} has shape {shapes[0][1]}, "
                               f"PyTorch's {shapes[0][2]} at {h}x{w}; nothing written")
        diff = max(float(np.abs(g - r.numpy()).max()) for g, r in zip(got, ref))
        if not diff <= _TOLERANCE:
            raise WeightsError(f"ONNX export of {weights_path.name} differs from PyTorch by {diff:.2g} at {h}x{w}; nothing written")
    path = weights_path.with_suffix(".onnx")
    block = {
        "file": path.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "weights_sha256": card["sha256"],
        "opset": _OPSET,
        "inputs": inputs,
        "outputs": outputs,
        "exported_with": f"torch {torch.__version__}",
    }
    atomic_write_bytes(path, data)
    write_card(weights_path, {**card, "onnx": block})  # the card as read (read_card changes nothing)
    return block
