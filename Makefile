# Convrelay: the one entry point. `make run` serves on 127.0.0.1:8080, `make test` runs everything.
SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo

.PHONY: help run test test-steps lint unit sdk-check contract bench db-reset build

help:
	@echo "make run       start a local PostgreSQL (unless DATABASE_URL is set), migrate, print a dev key, serve"
	@echo "make test      lint, then every test against a real PostgreSQL"
	@echo "make lint      cargo fmt --check and clippy -D warnings"
	@echo "make contract  the running server against openapi.yaml (schemathesis, examples, /docs in Chromium)"
	@echo "make sdk-check the request bodies the platform fakes accept, checked with the platforms' official libraries"
	@echo "make bench     drive the release server over loopback and print events/s, latency, memory;"
	@echo "               then attribution at scale (repeat customers, history, supernode) against pgbench;"
	@echo "               then reports over 1,000,000 conversions (BENCH_REPORTS=0 skips it);"
	@echo "               then the forwarder's drain to each ad platform's fake (BENCH_PLATFORMS=0 skips it)"
	@echo "make db-reset  stop the local PostgreSQL and delete its data"

build:
	$(CARGO) build --locked -p ingest-api --bin convrelay

run: build
	@scripts/run.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

# The steps that need a database run under scripts/with-localpg.sh: unless DATABASE_URL names a
# server, the local PostgreSQL is started once for them and stopped when they end (pass or fail)
# if it was not running before.
unit:
	@scripts/with-localpg.sh scripts/test.sh

contract:
	@scripts/with-localpg.sh scripts/contract.sh

sdk-check:
	@scripts/sdk-check.sh

test: lint
	@scripts/with-localpg.sh $(MAKE) --no-print-directory test-steps

test-steps: unit
	@scripts/sdk-check.sh
	@scripts/contract.sh
	@scripts/examples.sh
	@scripts/ui-test.sh

bench:
	@scripts/bench.sh
	@if [ "$${BENCH_MATCHER:-1}" != 0 ]; then scripts/bench-matcher.sh; fi
	@if [ "$${BENCH_REPORTS:-1}" != 0 ]; then scripts/bench-reports.sh; fi
	@if [ "$${BENCH_PLATFORMS:-1}" != 0 ]; then scripts/bench-platforms.sh; fi

db-reset:
	@scripts/localpg.sh reset
