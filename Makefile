# mtcd — build, test and demo entry points.  `make test` is what CI runs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Debian packages the test suite needs.  Installed by `make deps` when they are
# missing and we run as root; otherwise we say what is missing.
DEB_PACKAGES ?= systemd swtpm swtpm-tools build-essential pkg-config libtss2-dev libtss2-tcti-swtpm0 libsystemd-dev strace udev

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
	$(PY) bench/idle_cpu.py

# Real modem and SIM on the bench: make hw-test MODEM=/dev/ttyUSB2
hw-test: venv
	$(PY) -m pytest -q hw-tests --modem=$(MODEM)

# make install DESTDIR=/tmp/stage: the package under /usr, the units, the
# udev rule, the journal catalog and the example configuration.  The
# configuration is 0644: it holds no secret (PINs live sealed in
# /var/lib/mtcd), and mtcctl run by a technician reads it as well.
# An existing /etc/mtcd/mtcd.toml is kept.  --ignore-installed: without it
# pip first uninstalls an mtcd it finds in $(PYTHON)'s own environment (a
# development venv), whatever --root says.
install:
	$(PYTHON) -m pip install -q --root "$(or $(DESTDIR),/)" --prefix /usr --no-deps --ignore-installed --no-warn-script-location .
	install -D -m 0644 systemd/mtcd.service $(DESTDIR)/usr/lib/systemd/system/mtcd.service
	install -D -m 0644 systemd/mtcd-datalink.service $(DESTDIR)/usr/lib/systemd/system/mtcd-datalink.service
	install -D -m 0644 -t $(DESTDIR)/usr/share/doc/mtcd/examples/mtcd.service.d systemd/mtcd.service.d/*.conf.example
	install -D -m 0644 systemd/90-mtcd-modem.rules $(DESTDIR)/usr/lib/udev/rules.d/90-mtcd-modem.rules
	install -D -m 0644 systemd/mtcd.catalog $(DESTDIR)/usr/lib/systemd/catalog/mtcd.catalog
	install -D -m 0644 README.md $(DESTDIR)/usr/share/doc/mtcd/README.md
	test -e $(DESTDIR)/etc/mtcd/mtcd.toml || install -D -m 0644 config/mtcd.toml $(DESTDIR)/etc/mtcd/mtcd.toml
	@# Installing onto this very system: let systemd, udev and journald see the new files.
	@# A TPM owned by group tss (tpm-udev) opens for cap-less root only through that group.
	@if [ -z "$(DESTDIR)" ]; then \
	  if getent group tss >/dev/null && [ ! -e /etc/systemd/system/mtcd.service.d/tpm.conf ]; then \
	    install -D -m 0644 systemd/mtcd.service.d/tpm.conf.example /etc/systemd/system/mtcd.service.d/tpm.conf; \
	  fi; \
	  journalctl --update-catalog; systemctl daemon-reload || true; udevadm control --reload || true; \
	fi

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
