# Two entry points, each sets itself up on a fresh machine:
#   make demo  - install aescore into .venv and rank the bundled sample photos with the default weights
#   make test  - install aescore with its test extra into .venv (and chromium for the browser tests,
#                via .ci/ensure-chromium), check the import layers (.importlinter) and the types
#                (mypy, [tool.mypy] in pyproject.toml), run the test suite
# On a machine without a CUDA GPU, CPU-only PyTorch wheels are far smaller than PyPI's default:
#   make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
PY ?= python3
VENV ?= .venv
TORCH_INDEX ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test install bench clean

# pip is not quiet on purpose: the first install downloads PyTorch and takes minutes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@echo "aescore: installing aescore and its dependencies (PyTorch, torchvision, timm, Pillow, ...) into $(VENV)."
	@echo "aescore: PyTorch from PyPI with its CUDA libraries is about 6 GB and takes several minutes;"
	@echo "aescore: on a machine without a CUDA GPU, TORCH_INDEX=https://download.pytorch.org/whl/cpu is much smaller (see README.md)."
	$(BIN)/python -m pip install --upgrade pip
	$(if $(TORCH_INDEX),$(BIN)/python -m pip install --index-url $(TORCH_INDEX) torch torchvision)
	$(BIN)/python -m pip install -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	@echo "aescore: installing the test tools (pytest, pytest-xdist, playwright, import-linter, mypy)."
	$(BIN)/python -m pip install -e '.[test]'
	touch $(TEST_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/aescore rank samples/

test: $(TEST_STAMP)
	sh .ci/ensure-chromium
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest -n 2 tests

bench: $(STAMP)
	mkdir -p bench-results
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b > bench-results/$$(basename $$b .py).json || exit 1; done
	$(BIN)/python benchmarks/report.py bench-results

clean:
	rm -rf $(VENV) build dist *.egg-info
