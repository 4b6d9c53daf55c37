# Two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install bench docs config-docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/escape run fig6 --out runs/fig6-demo

test: $(STAMP)
	$(PY) tests/_parallel.py

bench: $(STAMP)
	$(PY) benchmarks/escape_throughput.py

config-docs: $(STAMP)
	$(PY) -c "import escape.experiments as e; print(e.config_reference(), end='')" > docs/config.md

docs: $(STAMP)
	$(PY) -m pip install --quiet -e '.[docs]'
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) runs site
