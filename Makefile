# ECM Workbench. Two commands after cloning:
#   make workbook   run every notebook on the embedded synthetic benchmark
#   make test       run the test suite (unit, parity, notebooks, browser)
# Both create a local virtual environment (.venv) on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# CPU build of PyTorch; for a GPU, install the torch build you need into .venv first.
TORCH  ?= torch==2.13.0

.PHONY: venv workbook test quick-workbook bench strip clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip show torch >/dev/null 2>&1 || $(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[notebooks,test]"
	touch $(STAMP)

venv: $(STAMP)

workbook: venv
	$(BIN)/python -m ecmlib workbook

quick-workbook: venv
	$(BIN)/python -m ecmlib workbook --quick

test: venv
	$(BIN)/python -m pytest

bench: venv
	$(BIN)/python benchmarks/bench_core.py

strip: venv
	$(BIN)/nbstripout --keep-id notebooks/*.ipynb

clean:
	rm -rf $(VENV) runs .pytest_cache
