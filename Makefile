# mtcd — build, test and demo entry points.  `make test` is what CI runs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Debian packages the test suite needs.  Installed by `make deps` when they are
# missing and we run as root; otherwise we say what is missing.
DEB_PACKAGES ?= systemd swtpm swtpm-tools build-essential pkg-config libtss2-dev libtss2-tcti-swtpm0

.PHONY: all deps venv test test-long demo bench hw-test install clean

all: test

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "missing Debian packages:$$missing (run 'make deps' as root)"; \
	  fi; \
	fi

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "mtcd needs Python >= 3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

venv: $(STAMP)

test: deps venv
	$(PY) -m pytest -q tests

demo: venv
	$(PY) -m mtcd.demo

bench: venv
	$(PY) bench/commands_to_pair.py
	$(PY) bench/keystore_scale.py

# Real modem and SIM on the bench: make hw-test MODEM=/dev/ttyUSB2
hw-test: venv
	$(PY) -m pytest -q hw-tests --modem=$(MODEM)

install:
	$(PYTHON) -m pip install --root "$(or $(DESTDIR),/)" --prefix /usr --no-deps .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
