# Two commands: `make run` (set up and start the embedded service) and
# `make test` (set up and run lint, generated-code check and the whole suite).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test deps system-deps ffmpeg iproute2 fonts postgres gen check-gen lint fmt unit bench-ladder \
	bench-dispatch soak soak-hosts bench-control-plane bench-job-overhead bench-watch-fanout bench-list-scale \
	bench-chunked bench-first-segment bench-quality bench-qc bench-playback bench-ladder-parts dashboard-deps dashboard-modules chromium \
	bench-s3-upload pubsub-emulator

run: deps dashboard-modules
	$(BIN)/kiln up

# Four pytest processes, one test module each at a time (module-scoped clusters stay whole),
# taken in collection order (--no-loadscope-reorder: pytest-xdist otherwise hands out the
# modules with the most tests first — the unit tests — and the long end-to-end modules,
# which tests/conftest.py orders first, ran last with the other processes idle).
# Most e2e time is waiting on servers, leases and FFmpeg: measured per module, the suite's
# processes used its CPU 37 % of their wall time with two (about 800 CPU-seconds in a
# 960 s run on two cores), so four keep both cores busy where two left them idle.
TEST_PROCESSES ?= 4
#
# Lint (ruff, mypy, import rules, buf) runs beside the suite rather than before it: on a clean
# clone mypy alone takes about 20 CPU-seconds, which the suite's first, slow-starting clusters
# leave free. Its output is printed after the tests'; either failing fails `make test`.
test: deps postgres pubsub-emulator dashboard-deps check-gen
	@$(MAKE) --no-print-directory lint > .lint.log 2>&1 & linting=$$!; \
	$(PY) -m pytest -q -n $(TEST_PROCESSES) --dist loadfile --no-loadscope-reorder --durations=15; tests=$$?; \
	wait $$linting; linted=$$?; \
	echo "--- make lint (run beside the tests):"; cat .lint.log; \
	if [ $$linted -ne 0 ]; then echo "make lint failed"; fi; \
	exit $$(( tests != 0 || linted != 0 ))

deps: system-deps $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# FFmpeg from Debian (libx264, libx265, libvpx, libaom/svt-av1, opus, lame); iproute2's `ip`
# for the tests' network-namespace hosts (tests/support/netns.py); DejaVu Sans, the one font
# text overlays are drawn in (worker/media/overlays.py).
system-deps: ffmpeg iproute2 fonts

fonts:
	@test -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-dejavu-core; }

iproute2:
	@command -v ip >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2; }

ffmpeg:
	@command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg; }

# The dashboard's players (hls.js, dash.js) and its browser-test driver (playwright-core) come
# from the committed lock file; the browser is Debian's chromium (no downloaded browser builds).
dashboard-deps: chromium dashboard-modules

dashboard-modules: dashboard/node_modules/.installed-stamp

dashboard/node_modules/.installed-stamp: dashboard/package.json dashboard/package-lock.json
	@command -v npm >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; }
	cd dashboard && npm ci --no-audit --no-fund --loglevel=error
	touch $@

chromium:
	@command -v chromium >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# The real PostgreSQL on this machine; started when it is down.
postgres:
	@pg_isready -q -h 127.0.0.1 -p 5432 || \
	  { pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start && \
	    for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; } || \
	  echo "warning: PostgreSQL is not reachable; the Postgres half of the suite will fail under CI"

# Google's Pub/Sub emulator, which the Pub/Sub tests and benchmarks start (one per test module).
# It is the package google-cloud-cli-pubsub-emulator of Google's Cloud SDK apt repository:
# on neither Debian's nor PyPI's registries, so nothing here can install it. This starts and
# stops it once; under CI=true a missing emulator fails here, elsewhere the tests fail on it.
pubsub-emulator: $(STAMP)
	@PYTHONPATH=.:gen $(PY) -m tests.support.pubsub_emulator || \
	  { if [ "$$CI" = true ]; then \
	      echo "error: CI needs Google's Pub/Sub emulator: install google-cloud-cli-pubsub-emulator (not on Debian's or PyPI's registries; see above)"; exit 1; \
	    else echo "warning: without Google's Pub/Sub emulator the Pub/Sub tests fail"; fi; }

gen: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/buf generate
	touch gen/kiln/__init__.py gen/kiln/v1/__init__.py gen/kiln/worker/__init__.py gen/kiln/worker/v1/__init__.py

check-gen: gen
	@git diff --exit-code --stat -- gen || { echo "gen/ is stale: run 'make gen' and commit"; exit 1; }
	@test -z "$$(git status --porcelain --untracked-files=all -- gen)" || \
	  { git status --porcelain -- gen; echo "gen/ has uncommitted files: run 'make gen' and commit"; exit 1; }

# lint-imports checks the three-package rule ([tool.importlinter] in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	PATH=$(CURDIR)/$(BIN):$$PATH PYTHONPATH=.:gen $(BIN)/lint-imports --no-logo
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/buf lint
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/buf format --diff --exit-code

fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/buf format -w

unit: deps
	$(PY) -m pytest -q tests/unit

bench-ladder: deps
	$(PY) bench/ladder.py

# Where the ladder's time goes (issue 22): kiln's argv with one difference taken out at a time,
# the steps the transcode task runs after ffmpeg, and the chunked commands without the service.
bench-ladder-parts: deps
	$(PY) bench/ladder_toggles.py
	$(PY) bench/ladder_after.py
	$(PY) bench/chunk_parts.py

# Create → worker starts the probe, per dispatch backend, against raw NOTIFY and Pub/Sub.
bench-dispatch: deps postgres pubsub-emulator
	$(PY) bench/dispatch_latency.py

# 1,000 jobs through 2 servers and 3 workers per backend, with a worker kill and a server restart.
soak: deps postgres pubsub-emulator
	$(PY) bench/soak.py

# The soak across hosts (issue 21): replicas and workers in network namespaces of their own,
# with kill -9s, partitions and a PostgreSQL restart. Needs root and iproute2's ip.
soak-hosts: deps pubsub-emulator
	$(PY) bench/soak.py --across-hosts

# Control-plane speed (issue 11): each prints its figures beside a floor measured in the same run.
bench-control-plane: deps postgres
	$(PY) bench/control_plane.py

bench-job-overhead: deps postgres
	$(PY) bench/job_overhead.py

bench-watch-fanout: deps
	$(PY) bench/watch_fanout.py --streams 10000 --clients 8

bench-list-scale: deps postgres
	$(PY) bench/list_scale.py

# 120 s 1080p30 HLS ladder: single pass against chunked on 1 and 2 pinned workers.
bench-chunked: deps
	$(PY) bench/chunked.py

# Create -> first playable segment of a chunked HLS ladder, 2/10/60 min 1080p sources, W=2.
bench-first-segment: deps
	$(PY) bench/first_segment.py

# What measure_quality adds to a ladder's encode.
bench-quality: deps
	$(PY) bench/quality_cost.py

# The quality-control read-back on the same ladder: its cost against the 15 % budget (docs/qc.md).
bench-qc: deps
	$(PY) bench/qc_cost.py

# Segment serving through /play/… against nginx on the same folder (issue 16), and Get
# latency while it runs. nginx and wrk (the load generator) are Debian's, installed here.
bench-playback: deps
	@{ command -v nginx || test -x /usr/sbin/nginx; } >/dev/null && command -v wrk >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk; }
	$(PY) bench/playback_serving.py

# A 200 MB ladder to a local SeaweedFS: kiln's worker path (presigned PUTs) against raw boto3,
# boto3 on 8 threads and obstore.
bench-s3-upload: deps
	$(PY) bench/s3_upload.py
