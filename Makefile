# The README's two set-up commands, `make demo` and `make test`, work from a clean clone on a fresh machine:
# they create .venv, install the project with its test tools, and fetch the Kafka broker from Maven Central.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
KAFKA_LIBS := .kafka/libs
BENCH_LIBS := .kafka/bench-libs
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: setup kafka demo test test-pure test-kafka lint typecheck synth bench mm2-report fault-table clean

setup: $(STAMP) $(KAFKA_LIBS)/.fetched $(BENCH_LIBS)/.fetched $(NODE_STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The broker version is pinned in one place: kafka-runtime/pom.xml.
$(KAFKA_LIBS)/.fetched: kafka-runtime/pom.xml
	rm -rf $(KAFKA_LIBS)
	mvn --batch-mode --quiet -f kafka-runtime/pom.xml dependency:copy-dependencies \
		-DoutputDirectory=$(CURDIR)/$(KAFKA_LIBS) -DincludeScope=runtime
	touch $@

kafka: $(KAFKA_LIBS)/.fetched

# Apache MirrorMaker 2 (the benchmark's reference), same Kafka version: the pom's `bench` profile.
$(BENCH_LIBS)/.fetched: kafka-runtime/pom.xml
	rm -rf $(BENCH_LIBS)
	mvn --batch-mode --quiet -f kafka-runtime/pom.xml -Pbench dependency:copy-dependencies \
		-DoutputDirectory=$(CURDIR)/$(BENCH_LIBS) -DincludeScope=runtime
	touch $@

# `make bench BENCH_ARGS="--records 200000"` for a shorter run; see `python -m bench.run --help`. It writes its
# report into README.md (Performance) too, naming the command and commit.
bench: setup $(BENCH_LIBS)/.fetched
	$(BIN)/python -m bench.run --readme README.md $(BENCH_ARGS)

# The corpus of real mm2.properties files read by MirrorMaker 2 itself and by this product: docs/mm2-corpus.md.
mm2-report: setup
	$(BIN)/python -m tests.mm2.compare

# README's fault table from the rows the last fault-suite run wrote (`$(BIN)/pytest -q tests/kafka/test_faults.py`
# writes build/reports/faults.json); copies that file to docs/faults.json. Refuses an unfinished or failed run.
fault-table: setup
	$(BIN)/python -m tests.kafka.fault_table

# The CDK CLI comes from npm through package.json, so `npx cdk synth` works after set-up.
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

synth: setup
	npx cdk synth --no-notices -c config=infra/examples/msk/mm2.properties -c settings=infra/examples/msk/deploy.json

demo: setup
	$(BIN)/smm demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache --no-logo
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

test: setup lint typecheck
	$(BIN)/pytest -q

test-pure: setup
	$(BIN)/pytest -q tests/pure

test-kafka: setup
	$(BIN)/pytest -q tests/kafka

clean:
	rm -rf $(VENV) node_modules .kafka .smm-local build cdk.out .pytest_cache .mypy_cache .ruff_cache
