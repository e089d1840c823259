# Two entry points, each sets itself up on a fresh machine:
#   make demo  - install aescore (the light install: what culling needs, no PyTorch) into .venv and
#                rank the bundled sample photos with the default weights
#   make test  - install everything (the train extra: PyTorch, torchvision, timm; and the test
#                tools) into .venv (and chromium for the browser tests, via .ci/ensure-chromium),
#                check that a wheel of this tree installs and ranks without PyTorch (.ci/check-light),
#                check the import layers (.importlinter) and the types (mypy, [tool.mypy] in
#                pyproject.toml), run the test suite
# `make test` on a machine without a CUDA GPU: CPU-only PyTorch wheels are far smaller than PyPI's default:
#   make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
PY ?= python3
VENV ?= .venv
TORCH_INDEX ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test install check-light bench clean

# pip is not quiet on purpose: it lists what it downloads and installs.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@echo "aescore: installing aescore and what culling needs into $(VENV): ONNX Runtime, NumPy, SciPy, Pillow,"
	@echo "aescore: Typer, Rich, exifread, defusedxml (about 370 MB, no PyTorch; see README.md)."
	@echo "aescore: training needs the train extra: pip install -e '.[train]' (PyTorch, torchvision, timm: GBs)."
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e .
	touch $(STAMP)

# Everything: the train extra (PyTorch from PyPI comes with its CUDA libraries on Linux, about 6 GB)
# and the test tools.
$(TEST_STAMP): $(STAMP)
	@echo "aescore: installing the training stack (PyTorch, torchvision, timm: about 6 GB from PyPI with CUDA,"
	@echo "aescore: several minutes; TORCH_INDEX=https://download.pytorch.org/whl/cpu is much smaller, see README.md)"
	@echo "aescore: and the test tools (pytest, pytest-xdist, playwright, import-linter, mypy)."
	$(if $(TORCH_INDEX),$(BIN)/python -m pip install --index-url $(TORCH_INDEX) torch torchvision)
	$(BIN)/python -m pip install -e '.[train,test]'
	touch $(TEST_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/aescore rank samples/

# A wheel of this tree in a clean virtual environment, without PyTorch: installs and ranks samples/.
check-light:
	sh .ci/check-light $(PY)

test: $(TEST_STAMP)
	sh .ci/ensure-chromium
	sh .ci/check-light $(PY)
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest -n 2 --dist loadgroup tests

bench: $(TEST_STAMP)
	mkdir -p bench-results
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b > bench-results/$$(basename $$b .py).json || exit 1; done
	$(BIN)/python benchmarks/report.py bench-results

clean:
	rm -rf $(VENV) build dist *.egg-info
