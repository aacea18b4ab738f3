# Two entry points for a newcomer: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.ssltk-installed

.PHONY: demo test test-all install clean

$(STAMP): pyproject.toml examples/ssltk-frame-order/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[dev]" -e examples/ssltk-frame-order
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ssltk demo

test: $(STAMP)
	$(BIN)/python -m pytest -q
	$(BIN)/python -m pytest -q examples/ssltk-frame-order/tests

clean:
	rm -rf $(VENV) runs .pytest_cache
