"""Export a model to the ONNX program that scores without importing torch (issue 16).

    PYTHONPATH=. python scripts/export_onnx.py [MODEL ...]     # default: the default model

Writes NAME.onnx beside the model's weights and records it (sha256, the weights' sha256, opset)
in its card, after checking the program's outputs against PyTorch at two input sizes
(:func:`aescore.inference.onnx_export.export_onnx`). Needs ``pip install -e '.[train,export]'`` (PyTorch and onnx).
"""

from __future__ import annotations

import argparse
import sys

from aescore.errors import missing_training_package, needs_training_stack
from aescore.weights import default_weights_path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", help="model names or .safetensors files (default: the default model)")
    args = ap.parse_args(argv)
    try:
        from aescore.inference.onnx_export import export_onnx
    except ModuleNotFoundError as err:  # the light install: the export builds the network in PyTorch
        package = missing_training_package(err)
        if package is None:
            raise
        print(f"export_onnx: exporting {needs_training_stack(package)}", file=sys.stderr)
        return 2
    for model in args.models or [str(default_weights_path())]:
        block = export_onnx(model)
        print(f"{model}: wrote {block['file']} (sha256 {block['sha256'][:12]}...)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
