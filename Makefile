# Two commands do all set-up: `make demo` runs the notebook series on ELPV,
# `make test` runs the test suite. Both create the virtual environment first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= quick
# Two-digit notebook prefixes for `make demo`, for example NOTEBOOKS=06; empty runs 00 to 05.
NOTEBOOKS ?=
STAMP := $(VENV)/.installed

.PHONY: demo test venv clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 > /dev/null
	touch $(STAMP)

demo: venv
	$(BIN)/python -m sclib.demo --profile $(PROFILE) $(if $(NOTEBOOKS),--notebooks $(NOTEBOOKS))

test: venv
	$(BIN)/python -m pytest -q

clean-venv:
	rm -rf $(VENV)
