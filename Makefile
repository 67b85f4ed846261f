# The one test command (README, .ci/run): formatting, lints, and every test of the workspace.
# It starts PostgreSQL and Redis when they are not already running.
CARGO ?= cargo

.PHONY: test services fmt-check clippy unit demo bench

test: services fmt-check clippy unit

services:
	@bash deploy/dev/ensure-services.sh

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# After the services, also under `make -j`.
unit: services
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast && $(CARGO) test --workspace --doc; \
	else \
		$(CARGO) test --workspace --no-fail-fast; \
	fi

# Quick start: gateway + simulator + a short load run on the embedded default config.
demo:
	bash deploy/dev/demo.sh

# End-to-end benchmark: direct baseline vs through the gateway, on this machine.
bench:
	$(CARGO) run --release -p smppgw-bench --bin e2e
