# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Both create .venv, install the pinned CPU build of PyTorch first (a plain `torch` requirement
# would pull a multi-GB CUDA build), then this package with its test extras.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
TORCH  ?= torch==2.13.0

.PHONY: install demo test test-fast lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(TORCH)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,mpi,tensorboard,hf,topology]'
	touch $@

demo: install          ## train a small MLP on digits, compute its surface, plot into results/demo/
	$(BIN)/landscape demo --out results/demo

test: install lint     ## everything CI runs: the fast suite plus the slow markers (GPU tests skip without one)
	$(BIN)/python -m pytest -m "not cuda" -q

test-fast: install     ## the default suite only (no slow, no MPI, no GPU tests)
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check landscape tests scripts
	$(BIN)/ruff format --check landscape tests scripts
	$(BIN)/lint-imports  # the layers contract in pyproject.toml: no import up a layer, no circle

clean:
	rm -rf $(VENV) results .pytest_cache
