# ECM Workbench. Two commands after cloning:
#   make workbook   run every notebook on the embedded synthetic benchmark
#   make test       run the test suite (unit, parity, notebooks, browser)
# and two to open it:
#   make lab        JupyterLab on notebooks/ with the .venv kernel (`python3`)
#   make explorer   the detection explorer (notebook 05) as a Voila app
# All create a local virtual environment (.venv) on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# CPU build of PyTorch; for a GPU, install the torch build you need into .venv first.
TORCH  ?= torch==2.13.0

.PHONY: venv workbook figures test quick-workbook lab explorer bench strip clean

# Extra arguments, e.g. make lab LAB_ARGS="--no-browser --port 8890"
LAB_ARGS    ?=
VOILA_ARGS  ?=
# Jupyter servers refuse to run as root unless told to.
ROOT_FLAG   := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip show torch >/dev/null 2>&1 || $(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[notebooks,test]"
	touch $(STAMP)

venv: $(STAMP)

workbook: venv
	$(BIN)/python -m ecmlib workbook

# Maintainers: refresh the committed figures/ from a full run, then commit what changed.
figures: venv
	$(BIN)/python -m ecmlib workbook --update-figures

quick-workbook: venv
	$(BIN)/python -m ecmlib workbook --quick

test: venv
	$(BIN)/python -m pytest

# The kernel is `python3`, which a server started from .venv runs with .venv's Python.
lab: venv
	$(BIN)/jupyter lab --notebook-dir=notebooks $(ROOT_FLAG) $(LAB_ARGS)

explorer: venv
	cd notebooks && $(abspath $(BIN))/voila 05_detection_explorer.ipynb $(VOILA_ARGS)

bench: venv
	$(BIN)/python benchmarks/bench_core.py

strip: venv
	$(BIN)/nbstripout --keep-id notebooks/*.ipynb

clean:
	rm -rf $(VENV) runs .pytest_cache
