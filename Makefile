# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Each target creates .venv (pip + venv, pinned versions) when it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-slow bench lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt setup.py engine/formats/_gguf_kernels.c
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==26.3
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/bot demo

# The tests spread over the machine's cores (pytest-xdist, at most 4 workers), a module per worker
# at a time (`loadscope`: each module-scoped fixture, e.g. a built wheel's venv, is made once):
# 7.1 min instead of 10.9 min serial on 2 cores. The full-size tests stay serial (GBs each).
test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist loadscope

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/python benchmarks/convert.py
	$(BIN)/python benchmarks/quantize_gguf.py
	$(BIN)/python benchmarks/quantize_diffusers.py
	$(BIN)/python benchmarks/validate.py
	$(BIN)/python benchmarks/hub.py
	$(BIN)/python benchmarks/whole_command.py
	$(BIN)/python benchmarks/scan.py
	$(BIN)/python benchmarks/real_layout.py
	$(BIN)/python benchmarks/per_repo.py
	$(BIN)/python benchmarks/backlog.py

lint: $(STAMP)
	$(BIN)/ruff check engine bot tests benchmarks
	$(BIN)/actionlint .github/workflows/*.yml
	$(BIN)/zizmor --offline .github/workflows/

clean:
	rm -rf $(VENV) out .hub
