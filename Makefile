.PHONY: demo test lint bench

demo:  ## set up and run the demo
	scripts/demo.sh

test:  ## install what the tests need, then lint, types and the suite
	scripts/test.sh

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy

bench:  ## measure; writes docs/BENCHMARKS.md and docs/benchmarks.json (a few minutes)
	scripts/bench.sh
