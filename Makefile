# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Each target creates .venv (pip + venv, pinned versions) when it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-slow bench lint clean sdcpp sdcpp-wheel

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt setup.py engine/formats/_gguf_kernels.c
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==26.3
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# The `sdcpp` extra: stable-diffusion.cpp's Python binding, which validation and `bot bench` run
# (engine/validation/sdcpp.py). PyPI has only its sdist, whose build compiles the C++ library with
# CMake: 5 min 08 s on 2 cores. `sdcpp-wheel` builds it once into SDCPP_WHEELS (skipped when a
# wheel of SDCPP_VERSION is there; CI caches that folder keyed on the version) with the CPU backend
# only, no WebP/WebM I/O (its bundled libraries: nothing unetbot reads), and an AVX2/FMA/F16C
# baseline instead of -march=native, so a cached wheel runs on any x86-64-v3 machine.
# `sdcpp` installs it into .venv.
SDCPP_VERSION := 0.4.7
SDCPP_WHEELS ?= $(HOME)/.cache/unetbot/sdcpp-wheels
SDCPP_PY ?= $(BIN)/python
SDCPP_CMAKE_ARGS := -DSD_WEBP=OFF -DSD_WEBM=OFF -DSD_BUILD_EXAMPLES=OFF -DGGML_NATIVE=OFF \
	-DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_OPENMP=ON \
	-DGGML_CCACHE=OFF

sdcpp-wheel:
	ls $(SDCPP_WHEELS)/stable_diffusion_cpp_python-$(SDCPP_VERSION)-*.whl >/dev/null 2>&1 || \
	CMAKE_ARGS="$(SDCPP_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
	$(SDCPP_PY) -m pip wheel --no-deps --no-binary stable-diffusion-cpp-python \
		-w $(SDCPP_WHEELS) stable-diffusion-cpp-python==$(SDCPP_VERSION)

sdcpp: $(STAMP)
	$(MAKE) sdcpp-wheel SDCPP_PY=$(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints.txt --find-links $(SDCPP_WHEELS) \
		-e '.[dev,sdcpp]'

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
	$(BIN)/ruff check .
	$(BIN)/actionlint .github/workflows/*.yml
	$(BIN)/zizmor --offline .github/workflows/

clean:
	rm -rf $(VENV) out .hub
