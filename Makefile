# The README's two commands: `make demo` and `make test`. Everything is installed from this repository's
# own files into .venv (torch pinned to the CPU build first, so that nothing pulls CUDA packages).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo-output

.PHONY: install test lint demo bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml DMIFLib/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

lint: install
	$(BIN)/ruff check .

# -X utf8: the tests read the commands' output (UTF-8: "0.78 (0.64–0.88) → positive") in a process where a
# library may have switched the C locale to ASCII mid-run; UTF-8 mode keeps their decoding independent of it.
test: lint
	$(BIN)/python -X utf8 -m pytest

demo: install
	$(BIN)/dmif demo --out $(DEMO_OUT)

clean:
	rm -rf $(DEMO_OUT) .pytest_cache .ruff_cache
