# Two commands on a fresh machine: `make run` (embedded default) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test drills mutants lint services install browser clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip "setuptools>=70.1"
	$(BIN)/pip install -q -e ".[test,embedded]"
	touch $@

# PostgreSQL is a real dependency of the suite: start the local cluster if it is down.
services:
	@pg_isready -q -h 127.0.0.1 -p 5432 || \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && exit 0; sleep 1; done; \
	  echo "PostgreSQL did not come up on 127.0.0.1:5432" >&2; exit 1

# Everything on one machine: SQLite in ./var, a local Kafka-compatible broker, a mail catcher;
# then the help article's story as a demo, and sign-in links to the pages (/ui/).
run: install
	@$(BIN)/rollcall serve & server=$$!; trap 'kill -INT $$server; wait $$server' INT TERM; \
	  until $(BIN)/python -c "import httpx; httpx.get('http://127.0.0.1:8000/readyz').raise_for_status()" \
	    2>/dev/null; do kill -0 $$server || exit 1; sleep 0.5; done; \
	  $(BIN)/rollcall demo; wait $$server

lint: install
	$(BIN)/ruff check --no-cache --output-format concise .
	$(BIN)/ruff format --no-cache --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

# The browser tests drive Debian's Chromium (never a downloaded browser) and check each
# page with axe-core from the npm registry; the sign-in test runs npm's oidc-provider.
# Both are kept out of the repository in .cache/.
AXE := .cache/axe/node_modules/axe-core/axe.min.js
OIDC_PROVIDER := .cache/oidc/node_modules/oidc-provider/package.json

browser: $(AXE) $(OIDC_PROVIDER)
	@command -v chromium >/dev/null || apt-get install -y -q chromium chromium-driver >/dev/null || \
	  (apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null)

$(AXE):
	npm install --prefix .cache/axe --no-audit --no-fund --silent axe-core@4

# A certified OpenID provider for the test of signing in to the pages through one.
$(OIDC_PROVIDER):
	npm install --prefix .cache/oidc --no-audit --no-fund --silent oidc-provider@8

# The suite (under 15 minutes), in two processes (a test file runs in one of them; each has
# its own PostgreSQL database and broker). The fault drills (processes killed, the broker
# restarted empty, database connections terminated, the database server restarted: about
# 5 minutes more) run alone with `make drills`.
test: install services browser lint
	$(BIN)/pytest -m "not drill" -n 2 --dist loadfile

drills: install services
	$(BIN)/pytest -m drill

# Mutation testing of domain/ (docs/quality.md): mutmut mutates a copy in mutants/ and runs,
# for each mutant, the in-process tests that reach its function. MUTANTS narrows it to
# patterns (the default: the rules and their deadlines; MUTANTS='rollcall.domain.*' for all of it,
# about an hour on two cores). mutants/ goes first on the path: the editable install
# would otherwise give the tests the code that was not mutated. Not in CI.
MUTANTS ?= rollcall.domain.rules* rollcall.domain.deadlines*

mutants: install
	$(BIN)/pip install -q -e ".[test,embedded,mutants]"
	rm -rf mutants && mkdir mutants  # on the path before mutmut starts: Python skips a missing one
	PYTHONPATH=$(CURDIR)/mutants $(BIN)/mutmut run --max-children 2 $(MUTANTS)
	$(BIN)/mutmut results --all true | $(BIN)/python -m tests.mutation_report

clean:
	rm -rf mutants $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis .cache tests/browser/shots
