# Dockcast: `make serve` runs a node on embedded defaults, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev
PYX := $(wildcard sfu/*.pyx sfu/*.pxd bench/*.pyx)
PYTEST_ARGS ?=

.PHONY: serve test test-fast build build-deps venv dev-venv system-deps bench fuzz cluster clean

# What the server needs: its runtime packages and the Cython build.
$(STAMP): requirements.txt requirements-build.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -r requirements.txt -r requirements-build.txt
	# setuptools' "Editable installation" notice is information, not a problem: not shown
	PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install -q --no-build-isolation --no-deps -e .
	touch $@

# What the tests, benchmarks and fuzzing add (pytest, hypothesis, playwright, plots...).
$(DEVSTAMP): $(STAMP) requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

venv: $(STAMP)
dev-venv: $(DEVSTAMP)

# The C compiler and Python headers the Cython build needs (installed when missing).
build-deps:
	PYTHON=$(PYTHON) bash scripts/system-deps.sh build

# Compile the Cython hot path in place (only what changed). A module that does not
# compile fails the build here (an install elsewhere may still fall back to the twins).
build: build-deps $(STAMP) $(PYX)
	DOCKCAST_REQUIRE_COMPILED=1 $(PY) setup.py -q build_ext --inplace
	$(PY) -c "from sfu import speedups; speedups.require_compiled()"

serve: build
	$(VENV)/bin/dockcast serve $(ARGS)

# Debian packages the end-to-end tests drive (browser, redis, GStreamer).
system-deps:
	PYTHON=$(PYTHON) bash scripts/system-deps.sh

# The whole suite in compiled mode, then every module with a Cython twin in pure mode.
test: build $(DEVSTAMP) system-deps
	$(PY) -m pytest $(PYTEST_ARGS)
	DOCKCAST_PUREPYTHON=1 $(PY) -m pytest -m twin $(PYTEST_ARGS)

test-fast: build $(DEVSTAMP)
	$(PY) -m pytest -x -q -m "not browser" $(PYTEST_ARGS)

# Coverage-guided fuzzing, one target at a time (docs/fuzzing.md):
# `make fuzz FUZZ_TARGETS=rtcp FUZZ_SECONDS=600`.
FUZZ_TARGETS ?= rtp rtcp vp8 h264 sdp_offer codec session
FUZZ_SECONDS ?= 300
fuzz: build $(DEVSTAMP)
	for target in $(FUZZ_TARGETS); do \
		$(PY) scripts/fuzz.py $$target --seconds $(FUZZ_SECONDS) --pure --quiet || exit 1; \
	done

# The baselines (Janus, mediasoup's node and libraries) are installed for benchmarks only.
bench: build $(DEVSTAMP)
	PYTHON=$(PYTHON) bash scripts/system-deps.sh bench
	$(VENV)/bin/dockcast bench $(ARGS)

# Redis and three nodes in three regions on this machine (scripts/cluster.py);
# WAN=75,5,1 puts the WAN emulator between the nodes (150 ms RTT, jitter, 1% loss).
cluster: build
	$(PY) scripts/cluster.py $(if $(WAN),--wan $(WAN)) $(ARGS)

clean:
	rm -rf build $(VENV) sfu/*.so sfu/_*.c
