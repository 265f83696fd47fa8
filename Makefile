# Two entry points: `make demo` runs the main job on generated data, `make test` runs the tests.
# Both create .venv (Python 3.11) and install the project into it when needed.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (set PYTHON=...)"; exit 1; }
	@# Debian tools the tests use: tesseract-ocr (the second text detector) and chromium (renders the
	@# HTML report in a test). Their tests skip when they cannot be installed.
	@{ command -v tesseract && command -v chromium; } >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ apt-get update -qq && apt-get install -y -qq tesseract-ocr chromium >/dev/null; } || \
		echo "note: tesseract-ocr / chromium not installed; their tests will skip"; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cxr-audit demo --out runs/demo

# Two pytest workers (2 cores); the tests that share one audit run stay on one worker (xdist_group). The 15
# slowest tests are listed at the end, so a test that grows slow is seen.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup --durations=15

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m benchmarks.igos_speed

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
