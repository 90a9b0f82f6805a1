# Traverse: build, run and test. `make run` and `make test` work on a fresh Debian 12 machine.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

SWIFT ?= swift
# Build directory (e.g. `make test SCRATCH=.build-harness`).
SCRATCH ?= .build
SWIFT_BUILD_FLAGS ?=
TRAVERSE := $(SCRATCH)/debug/traverse
VENV ?= .venv
PYTHON ?= python3

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_GET := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -qq -y -o Dpkg::Use-Pty=0

BUILD_PACKAGES := libssl-dev libsrtp2-dev libhiredis-dev libbpf-dev pkg-config
# Read at run time: Chart.js for the console's charts (/usr/share/javascript/chart.js/chart.min.js).
RUN_PACKAGES := libjs-chart.js
# chromium: the console tests drive it headless (Tests/Interop/test_console.py). iproute2 and ethtool:
# the XDP lab (scripts/xdp-lab.sh, Tests/Interop/test_xdp.py).
INTEROP_PACKAGES := coturn stun-client prometheus redis-server chromium iproute2 ethtool

# apt_install(packages): install those not yet installed; `apt-get update` only when something is missing.
define apt_install
missing=""; \
for p in $(1); do \
  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
done; \
if [ -n "$$missing" ]; then \
  echo "apt-get install:$$missing"; \
  $(APT_GET) update >/dev/null; \
  $(APT_GET) install --no-install-recommends $$missing >/dev/null; \
fi
endef

.PHONY: deps build bpf run test swift-test interop interop-deps deploy-check deploy-deps container-check \
	bench bench-compare bench-xdp soak fuzz lint docs format clean distclean screenshots

deps:
	@$(call apt_install,$(BUILD_PACKAGES) $(RUN_PACKAGES))

# The XDP program (server.fast_path = "xdp"): compiled with clang (the Swift toolchain's, or
# Debian's) for the BPF target, beside the executables that load it. Never committed.
CLANG ?= clang
BPF_SOURCE := Sources/CTraverseXDP/bpf/traverse_xdp.bpf.c
BPF_CFLAGS := -O2 -g -Wall -target bpf -I/usr/include/$(shell uname -m)-linux-gnu
# bpf_object(dir): compiles the program into dir/traverse-xdp.bpf.o when the source is newer.
define bpf_object
test -d $(1) || { echo "$(1): build first" >&2; exit 1; }; if [ ! -e $(1)/traverse-xdp.bpf.o ] || [ $(BPF_SOURCE) -nt $(1)/traverse-xdp.bpf.o ] \
  || [ Sources/CTraverseXDP/include/traverse_xdp_maps.h -nt $(1)/traverse-xdp.bpf.o ]; then \
  $(CLANG) $(BPF_CFLAGS) -c $(BPF_SOURCE) -o $(1)/traverse-xdp.bpf.o; fi
endef

build:
	$(SWIFT) build --scratch-path $(SCRATCH) $(SWIFT_BUILD_FLAGS)
	@$(call bpf_object,$(SCRATCH)/debug)

# Only the XDP object (e.g. for a release build: `make bpf BPF_DIR=.build/release`).
BPF_DIR ?= $(SCRATCH)/debug
bpf:
	@$(call bpf_object,$(BPF_DIR))

run: deps build
	$(TRAVERSE) serve

# Runs every part, then fails if any part failed.
test: deps interop-deps deploy-deps
	@status=0; \
	$(MAKE) --no-print-directory swift-test || status=1; \
	$(MAKE) --no-print-directory interop || status=1; \
	$(MAKE) --no-print-directory deploy-check || status=1; \
	if [ $$status -ne 0 ]; then echo "make test: FAILED" >&2; fi; \
	exit $$status

# Built first, then the XDP object beside the test bundle (the XDP program tests load it).
swift-test:
	$(SWIFT) build --build-tests --scratch-path $(SCRATCH) $(SWIFT_BUILD_FLAGS)
	@$(call bpf_object,$(SCRATCH)/debug)
	$(SWIFT) test --skip-build --scratch-path $(SCRATCH) $(SWIFT_BUILD_FLAGS)

interop: build
	TRAVERSE_BIN="$(abspath $(TRAVERSE))" $(VENV)/bin/python -m pytest -q Tests/Interop

# The console tests again, writing their screenshots to Docs/images/console-*.png.
screenshots: build
	UPDATE_SCREENSHOTS=1 TRAVERSE_BIN="$(abspath $(TRAVERSE))" $(VENV)/bin/python -m pytest -q Tests/Interop/test_console.py

# coturn's clients (turnutils_*), Debian's stun client, Prometheus (test_ops.py starts its own
# on loopback), redis-server (the fleet tests start their own), Chromium (the console tests run it
# headless), and a venv with aioice, pytest and websocket-client.
# Installing coturn or prometheus may start its service: stop only a process the install started.
interop-deps:
	@before="$$(pgrep -x turnserver || true)"; \
	before_prometheus="$$(pgrep -x prometheus || true)"; \
	before_redis="$$(pgrep -f '^redis-server .*:6379' || true)"; \
	extra=""; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || extra="python3-venv"; \
	command -v $(PYTHON) >/dev/null || extra="python3 python3-venv"; \
	$(call apt_install,$(INTEROP_PACKAGES) $$extra); \
	for pid in $$(pgrep -x turnserver || true); do \
	  if ! grep -qx "$$pid" <<<"$$before"; then \
	    echo "stopping the turnserver (pid $$pid) started by the coturn package"; \
	    systemctl stop coturn 2>/dev/null || true; \
	    kill "$$pid" 2>/dev/null || true; \
	  fi; \
	done; \
	for pid in $$(pgrep -x prometheus || true); do \
	  if ! grep -qx "$$pid" <<<"$$before_prometheus"; then \
	    echo "stopping the prometheus (pid $$pid) started by the prometheus package"; \
	    systemctl stop prometheus 2>/dev/null || true; \
	    kill "$$pid" 2>/dev/null || true; \
	  fi; \
	done; \
	for pid in $$(pgrep -f '^redis-server .*:6379' || true); do \
	  if ! grep -qx "$$pid" <<<"$$before_redis"; then \
	    echo "stopping the redis-server (pid $$pid) started by the redis-server package (tests start their own)"; \
	    systemctl stop redis-server 2>/dev/null || true; \
	    kill "$$pid" 2>/dev/null || true; \
	  fi; \
	done
	@if ! $(VENV)/bin/python -c 'import aioice, pytest, websocket' 2>/dev/null; then \
	  echo "creating $(VENV) (aioice, pytest, websocket-client)"; \
	  $(PYTHON) -m venv $(VENV); \
	  $(VENV)/bin/pip install -q --disable-pip-version-check -r Tests/Interop/requirements.txt; \
	fi

# Kubernetes manifests (kubernetes-validate), the systemd unit (systemd-analyze verify) and the
# Containerfile (static): see deploy/check.sh. Needs no Swift build.
deploy-check: deploy-deps
	VENV="$(VENV)" deploy/check.sh

container-check:
	deploy/check.sh container

# systemd-analyze (Debian's systemd package), and kubernetes-validate in the venv.
deploy-deps:
	@command -v systemd-analyze >/dev/null || { $(call apt_install,systemd); }
	@if ! $(VENV)/bin/python -c 'import kubernetes_validate' 2>/dev/null; then \
	  echo "installing kubernetes-validate into $(VENV)"; \
	  [ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV); \
	  $(VENV)/bin/pip install -q --disable-pip-version-check -r deploy/requirements.txt; \
	fi

bench:
	cd Benchmarks && $(SWIFT) package benchmark

bench-compare:
	Benchmarks/compare/bench-compare.sh

# coturn vs Traverse (sockets) vs Traverse (XDP) in a network-namespace lab, machine-wide CPU per
# relayed datagram from /proc/stat; needs root. See Docs/benchmarks.md.
bench-xdp:
	Benchmarks/xdp/bench-xdp.sh

# Long run under churning load (not part of `make test`); see Benchmarks/soak/README.md.
# Uses TRAVERSE_BIN / TRAVERSE_LOAD_BIN when set, else builds release binaries.
SOAK_MINUTES ?= 30
soak:
	SOAK_MINUTES="$(SOAK_MINUTES)" Benchmarks/soak/soak.sh

# libFuzzer targets (their own package, Fuzz/): builds them, then runs each for FUZZ_SECONDS from a
# temporary copy of its seed corpus; fails on any crash, leak or timeout. See Fuzz/README.md.
FUZZ_SECONDS ?= 60
fuzz: deps
	SWIFT="$(SWIFT)" FUZZ_SECONDS="$(FUZZ_SECONDS)" Fuzz/fuzz.sh

lint:
	$(SWIFT) format lint -r --configuration .swift-format Sources Tests
	@$(MAKE) --no-print-directory docs

# STUNCodec and TURNCore: `///` on every public declaration, and their DocC catalogs
# (Sources/<Module>/<Module>.docc) converted without a warning. See scripts/check-docs.sh;
# DOCS_OUTPUT=dir keeps the rendered .doccarchive files.
docs:
	SWIFT="$(SWIFT)" SCRATCH="$(SCRATCH)" SWIFT_BUILD_FLAGS="$(SWIFT_BUILD_FLAGS)" scripts/check-docs.sh

format:
	$(SWIFT) format format -i -r --configuration .swift-format Sources Tests

clean:
	rm -rf $(SCRATCH) Benchmarks/.build
	find Tests/Interop -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
