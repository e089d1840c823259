# Two entry points, each sets itself up on a fresh machine:
#   make demo  - install aescore into .venv and rank the bundled sample photos with the default weights
#   make test  - install aescore with its test extra into .venv (and chromium for the browser tests,
#                via .ci/ensure-chromium) and run the test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/aescore rank samples/

test: $(STAMP)
	sh .ci/ensure-chromium
	$(BIN)/python -m pytest -n 2 tests

bench: $(STAMP)
	mkdir -p bench-results
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b > bench-results/$$(basename $$b .py).json || exit 1; done
	$(BIN)/python benchmarks/report.py bench-results

clean:
	rm -rf $(VENV) build dist *.egg-info
