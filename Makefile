VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo lint bench clean programs

$(PY):
	python3 -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,all]'
	touch $(STAMP)

# The real programs the tests drive (D16), pinned in npm/package-lock.json. Without npm the
# tests that need them skip (or fail under LIONPRIDE_REQUIRE_CLIS=1, as .ci/run sets).
NPM_STAMP := npm/node_modules/.installed

$(NPM_STAMP): npm/package.json npm/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix npm --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: tests of the real CLIs and MCP servers will skip"; fi

programs: $(NPM_STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy src

test: lint programs
	$(PY) -m pytest

demo: $(STAMP)
	$(VENV)/bin/lionpride demo

bench: $(STAMP)
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) -m bench.run_all

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache npm/node_modules
