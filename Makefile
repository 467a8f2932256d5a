# mtcd — build, test and demo entry points.  `make test` is what CI runs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Debian packages the test suite needs.  Installed by `make deps` when they are
# missing and we run as root; otherwise we say what is missing.  pcscd and
# vsmartcard-vpcd: the PC/SC tests run a private pcscd with vpcd's virtual
# reader (tests/pcscstack.py); libpcsclite-dev and swig build pyscard where
# pip finds no wheel of it; python3-pyscard is for Debian's own python3.
DEB_PACKAGES ?= systemd swtpm swtpm-tools build-essential pkg-config libtss2-dev libtss2-tcti-swtpm0 libsystemd-dev strace udev \
  pcscd vsmartcard-vpcd libpcsclite-dev swig python3-pyscard
# The real ModemManager, polkitd and a private D-Bus daemon for tests/test_modemmanager.py.
MM_DEB_PACKAGES ?= modemmanager polkitd dbus-daemon dbus-bin
# The real NetworkManager for tests/test_modemmanager_networkmanager.py: the
# tests run their own, in private namespaces (tests/nmstack.py); on a machine
# booted with systemd the package also enables its own service.
NM_DEB_PACKAGES ?= network-manager iproute2
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
# What `make deb` needs: the Debian build tools, lintian, and pip to fetch
# python-gsmmodem-new's sdist (Debian has no package of it).
DEB_BUILD_PACKAGES ?= git debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools python3-setuptools-scm python3-pip lintian
GSMMODEM_VERSION ?= 0.13.0
DEB_WORK := build/deb
# Debian's tools with Debian's python3 only: no pyenv shim, no venv, no
# /usr/local python shadowing /usr/bin/python3 in a package build.
DEB_ENV := env -u PYTHONPATH -u VIRTUAL_ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin

.PHONY: all deps venv test test-long demo demo-deps bench hw-test install clean deb deb-deps test-bookworm test-deb

all: test

# $(call apt_ensure,PACKAGES): install the Debian packages missing from this
# machine when we run as root; otherwise name them and fail only if $(2).
define apt_ensure
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "missing Debian packages:$$missing (run 'make $@' as root)"; $(if $(2),exit 1,:); \
	  fi; \
	fi
endef

deps:
	$(call apt_ensure,$(DEB_PACKAGES))
	$(call apt_ensure,$(MM_DEB_PACKAGES))
	$(call apt_ensure,$(NM_DEB_PACKAGES))

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "mtcd needs Python >= 3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

venv: $(STAMP)

# Two pytest workers (pytest-xdist): most of the suite waits on simulated
# modems and subprocesses, so two share a 2-core CI machine well.  Tests that
# must not overlap carry an xdist_group mark.  TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
test: deps venv
	$(PY) -m pytest -q $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadgroup) tests

# `make demo` on a fresh machine: the Debian packages that building the
# runtime dependencies needs (systemd-python compiles against libsystemd;
# Debian's own python3 also needs its venv and headers), then a venv with
# mtcd and its runtime dependencies only, no test tools.  A venv `make test`
# already made is used as it is; `make test` later completes a demo's venv.
DEMO_STAMP := $(VENV)/.installed-runtime
DEMO_DEB_PACKAGES ?= build-essential pkg-config libsystemd-dev \
  $(if $(filter /usr,$(shell $(PYTHON) -c 'import sys; print(sys.base_prefix)' 2>/dev/null || echo /usr)),python3 python3-venv python3-dev)

# With pcscd and vpcd on this machine the demo also shows the SIM in a PC/SC
# reader (mtcd.sim.pcscstack; as root): the venv then gets pyscard too.
DEMO_EXTRAS := $(if $(wildcard /usr/lib/pcsc/drivers/serial/libifdvpcd.so),.[pcsc],.)

demo-deps:
	@echo "== make demo: checking the Debian packages it needs"
	$(call apt_ensure,$(DEMO_DEB_PACKAGES))

$(DEMO_STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "mtcd needs Python >= 3.11"; exit 1; }
	@echo "== creating $(VENV) with $$($(PYTHON) -c 'import sys; print(sys.executable, sys.version.split()[0])')"
	@$(PYTHON) -m venv $(VENV)
	@echo "== installing mtcd and its runtime dependencies (building systemd-python takes a minute)"
	@# pip's own progress, one line per package, without its noise; pip's exit status kept.
	@{ $(PY) -m pip install --disable-pip-version-check -e '$(DEMO_EXTRAS)' 2>&1; echo $$? > $(VENV)/.pip-status; } | \
	  grep --line-buffered -E '^(Collecting|Building wheel|Successfully|ERROR|error)' | sed -u 's/^/   /'
	@status=$$(cat $(VENV)/.pip-status); rm -f $(VENV)/.pip-status; \
	  [ "$$status" = 0 ] || { echo "pip failed (exit $$status): $(PY) -m pip install -e . shows why"; exit 1; }
	@touch $@

demo: demo-deps $(if $(wildcard $(STAMP)),$(STAMP),$(DEMO_STAMP))
	@echo "== running the demo (python -m mtcd.demo)"
	$(PY) -m mtcd.demo

# Every script whose figures BENCHMARKS.md holds, with the options those
# figures were taken with (about 20 minutes, most of it the two idle windows).
# modemmanager_cost.py and nm_secret_reads.py run Debian's ModemManager (and
# NetworkManager) on a private bus: root only.
bench: venv
	$(PY) bench/commands_to_pair.py
	$(PY) bench/commands_to_pair.py --runs 5 --latency 0.05 --show
	$(PY) bench/first_command.py
	$(PY) bench/start_cost.py --runs 5
	$(PY) bench/start_cost.py --runs 5 --no-bytecode
	$(PY) bench/keystore_scale.py
	$(PY) bench/journal_scale.py
	$(PY) bench/scale_decision.py
	$(PY) bench/idle_cpu.py
	$(PY) bench/idle_cpu.py --no-concatenation
	@if [ "$$(id -u)" = 0 ]; then $(PY) bench/modemmanager_cost.py; \
	  else echo "bench/modemmanager_cost.py skipped: it needs root (it runs ModemManager on a private D-Bus)"; fi
	@if [ "$$(id -u)" = 0 ]; then $(PY) bench/nm_secret_reads.py; \
	  else echo "bench/nm_secret_reads.py skipped: it needs root (it runs NetworkManager on a private D-Bus)"; fi

# The soak (tests/soak.py): boot, SIM swap, wrong SIM, modem reset, lying PIN change and
# power-cut cycles against the simulator with random mtcctl commands, every
# guarantee checked each cycle.  Half the cycles against `mtcd once`, half
# against one `mtcd run`.  Progress one line a cycle; SOAK_SEED replays a
# schedule, SOAK_START resumes from a cycle.  Its last run: BENCHMARKS.md.
.PHONY: soak
SOAK_CYCLES ?= 10000
soak: venv
	$(PY) tests/soak.py --cycles $(SOAK_CYCLES) $(if $(SOAK_SEED),--seed $(SOAK_SEED)) $(if $(SOAK_START),--start $(SOAK_START))

# Real modem and SIM on the bench (hw-tests/README.md first):
#   make hw-test MODEM=/dev/ttyUSB2 [VENDOR=quectel] [CARD=card.toml] [READER=name] \
#                [DESTRUCTIVE=yes] [RECORD=dir] [HW_TEST_FLAGS="--foreign-sim --hotswap"]
# Without MODEM every test is skipped with the reason.
hw-test: venv
	$(PY) -m pytest -q -p no:cacheprovider hw-tests $(if $(MODEM),--modem=$(MODEM)) $(if $(VENDOR),--vendor=$(VENDOR)) \
	  $(if $(CARD),--card=$(CARD)) $(if $(READER),--reader=$(READER)) $(if $(filter yes,$(DESTRUCTIVE)),--destructive) \
	  $(if $(RECORD),--record=$(RECORD)) $(HW_TEST_FLAGS)

# make install DESTDIR=/tmp/stage: for machines that do not take the .deb
# (`make deb`, which is the recommended way on Debian and Raspberry Pi OS).
# The package with Debian's own python3 in Debian's layout (/usr/bin/mtcd,
# the unit's ExecStart; /usr/lib/python3/dist-packages), the units, the udev
# rule, the journal catalog, the man pages and the example configuration.
# Not the simulator nor the demo (WITH_SIM=yes installs them too).
# Its dependencies are Debian's packages, installed when run as root onto
# this system (INSTALL_DEPS=no skips that); SMS alerts also need
# python3-gsmmodem-new, which Debian lacks: `make deb` builds it.
# The configuration is 0644: it holds no secret (PINs live sealed in
# /var/lib/mtcd), and mtcctl run by a technician reads it as well.
# An existing /etc/mtcd/mtcd.toml is kept.  --ignore-installed: without it
# pip first uninstalls an mtcd it finds in an environment of its own.
# --no-build-isolation: built with Debian's setuptools, nothing downloaded.
INSTALL_PYTHON ?= /usr/bin/python3
INSTALL_DEPS ?= yes
WITH_SIM ?= no
RUNTIME_DEB_PACKAGES ?= python3 python3-serial python3-cryptography python3-systemd systemd procps
INSTALL_BUILD_PACKAGES ?= python3-pip python3-setuptools python3-wheel
SITE := /usr/lib/python3/dist-packages

install:
	$(call apt_ensure,$(INSTALL_BUILD_PACKAGES) $(if $(and $(filter yes,$(INSTALL_DEPS)),$(if $(DESTDIR),,y)),$(RUNTIME_DEB_PACKAGES)),fail)
	DEB_PYTHON_INSTALL_LAYOUT=deb $(INSTALL_PYTHON) -m pip install -q --root-user-action=ignore --root "$(or $(DESTDIR),/)" --prefix /usr \
	  --no-deps --ignore-installed --no-build-isolation --no-warn-script-location .
	@# pip records where it was built from: a path of this machine, not the gateway's business.
	rm -f $(DESTDIR)$(SITE)/mtcd-$(VERSION).dist-info/direct_url.json
	$(if $(filter yes,$(WITH_SIM)),,rm -rf $(DESTDIR)/usr/bin/mtcd-sim $(DESTDIR)$(SITE)/mtcd/sim $(DESTDIR)$(SITE)/mtcd/demo.py $(DESTDIR)$(SITE)/mtcd/__pycache__/demo.*)
	install -D -m 0644 systemd/mtcd.service $(DESTDIR)/usr/lib/systemd/system/mtcd.service
	install -D -m 0644 systemd/mtcd-datalink.service $(DESTDIR)/usr/lib/systemd/system/mtcd-datalink.service
	install -D -m 0644 -t $(DESTDIR)/usr/share/doc/mtcd/examples/mtcd.service.d systemd/mtcd.service.d/*.conf.example
	install -D -m 0644 systemd/90-mtcd-modem.rules $(DESTDIR)/usr/lib/udev/rules.d/90-mtcd-modem.rules
	install -D -m 0644 systemd/mtcd.catalog $(DESTDIR)/usr/lib/systemd/catalog/mtcd.catalog
	install -D -m 0644 README.md $(DESTDIR)/usr/share/doc/mtcd/README.md
	install -D -m 0644 -t $(DESTDIR)/usr/share/man/man8 debian/man/mtcd.8 debian/man/mtcctl.8
	install -D -m 0644 debian/completion/mtcd $(DESTDIR)/usr/share/bash-completion/completions/mtcd
	ln -sf mtcd $(DESTDIR)/usr/share/bash-completion/completions/mtcctl
	test -e $(DESTDIR)/etc/mtcd/mtcd.toml || install -D -m 0644 config/mtcd.toml $(DESTDIR)/etc/mtcd/mtcd.toml
	@# Installing onto this very system: let systemd, udev and journald see the new files.
	@# A TPM owned by group tss (tpm-udev) opens for cap-less root only through that group.
	@if [ -z "$(DESTDIR)" ]; then \
	  if getent group tss >/dev/null && [ ! -e /etc/systemd/system/mtcd.service.d/tpm.conf ]; then \
	    install -D -m 0644 systemd/mtcd.service.d/tpm.conf.example /etc/systemd/system/mtcd.service.d/tpm.conf; \
	  fi; \
	  journalctl --update-catalog; systemctl daemon-reload || true; udevadm control --reload || true; \
	  $(INSTALL_PYTHON) -c 'import gsmmodem' 2>/dev/null || \
	    echo "note: SMS alerts ([alerts] sms_to) need python3-gsmmodem-new: make deb && apt-get install ./dist/python3-gsmmodem-new_*_all.deb"; \
	fi

# Debian packages (Debian 12 bookworm / Raspberry Pi OS), into dist/:
#   mtcd_$(VERSION)_all.deb                    the service, mtcctl, unit, udev rule, catalog
#   mtcd-sim_$(VERSION)_all.deb                the simulator and the demo (not for gateways)
#   python3-gsmmodem-new_$(GSMMODEM_VERSION)-1_all.deb  for SMS alerts (Debian lacks it)
# Built from a copy of the tree (tracked and new files, not .venv or build/),
# so dpkg-buildpackage writes nothing next to the repository.
deb-deps:
	$(call apt_ensure,$(DEB_BUILD_PACKAGES),fail)

deb: deb-deps
	rm -rf $(DEB_WORK) && mkdir -p $(DEB_WORK)/mtcd-$(VERSION) dist
	git ls-files -z --cached --others --exclude-standard | \
	  xargs -0 sh -c 'for f; do [ -e "$$f" ] && printf "%s\0" "$$f"; done' sh | \
	  tar --null -T - -cf - | tar -xf - -C $(DEB_WORK)/mtcd-$(VERSION)
	@test "$$(cd $(DEB_WORK)/mtcd-$(VERSION) && dpkg-parsechangelog -S Version)" = "$(VERSION)" || \
	  { echo "debian/changelog's version is not pyproject.toml's $(VERSION)"; exit 1; }
	cd $(DEB_WORK)/mtcd-$(VERSION) && $(DEB_ENV) dpkg-buildpackage -b -us -uc
	/usr/bin/python3 -m pip download -q --no-deps --no-binary :all: -d $(DEB_WORK)/gsmmodem \
	  python-gsmmodem-new==$(GSMMODEM_VERSION)
	tar -xzf $(DEB_WORK)/gsmmodem/python-gsmmodem-new-$(GSMMODEM_VERSION).tar.gz -C $(DEB_WORK)/gsmmodem
	cp -r debian/gsmmodem $(DEB_WORK)/gsmmodem/python-gsmmodem-new-$(GSMMODEM_VERSION)/debian
	cd $(DEB_WORK)/gsmmodem/python-gsmmodem-new-$(GSMMODEM_VERSION) && $(DEB_ENV) dpkg-buildpackage -b -us -uc
	cp $(DEB_WORK)/*.deb $(DEB_WORK)/gsmmodem/*.deb dist/
	$(DEB_ENV) lintian --fail-on error --info --suppress-tags-from-file debian/lintian-suppressed \
	  dist/mtcd_$(VERSION)_all.deb dist/mtcd-sim_$(VERSION)_all.deb \
	  dist/python3-gsmmodem-new_$(GSMMODEM_VERSION)-1_all.deb
	@ls -l dist/*.deb

# The test suite on exactly Debian bookworm's library versions: a venv of
# Debian's /usr/bin/python3 that sees Debian's python3-* packages, with only
# the test tools and what Debian lacks (python-gsmmodem-new) from pip.
BOOKWORM_VENV ?= .venv-bookworm
BOOKWORM_PY := $(BOOKWORM_VENV)/bin/python
BOOKWORM_LIBS ?= python3-venv python3-pip python3-setuptools python3-wheel python3-serial python3-cryptography python3-keyring python3-systemd python3-tpm2-pytss python3-pyscard

test-bookworm: deps
	$(call apt_ensure,$(BOOKWORM_LIBS),fail)
	test -x $(BOOKWORM_PY) || /usr/bin/python3 -m venv --system-site-packages $(BOOKWORM_VENV)
	$(BOOKWORM_PY) -m pip install -q pytest hypothesis
	$(BOOKWORM_PY) -m pip install -q --no-deps python-gsmmodem-new==$(GSMMODEM_VERSION)
	$(BOOKWORM_PY) -m pip install -q --no-deps --no-build-isolation -e .
	@# Fail if pip put its own copy of a library Debian provides into the venv.
	$(BOOKWORM_PY) -c 'import importlib.metadata as m, serial, cryptography, keyring, systemd, tpm2_pytss; \
	  mods = (serial, cryptography, keyring, systemd, tpm2_pytss); \
	  [print(f"{x.__name__:13} {x.__file__}") for x in mods]; \
	  bad = [x.__name__ for x in mods if not x.__file__.startswith("/usr/lib/python3/dist-packages/")]; \
	  print("versions:", *(f"{d}={m.version(d)}" for d in ("pyserial", "cryptography", "keyring", "systemd-python", "tpm2-pytss"))); \
	  raise SystemExit(f"not Debian'"'"'s: {bad}" if bad else None)'
	@# Every failure at once, a module that fails to import included.
	@# -p tpm2_pytss: tpm2-pytss 1.2 turns itself into a documentation stub
	@# when imported after unittest.mock, which hypothesis imports; loaded
	@# first, it is real.  mtcd itself never imports unittest.mock.
	$(BOOKWORM_PY) -m pytest -q -p no:cacheprovider -p tpm2_pytss --continue-on-collection-errors tests

# The .deb on a clean Debian bookworm root (mmdebstrap, cached in .cache/):
# apt-get install, the installed commands against the simulator, the unit
# verified.  Needs root and Debian's mirror; CI runs it (.ci/run).
test-deb: deb venv
	$(call apt_ensure,mmdebstrap util-linux groff-base,fail)
	MTCD_PACKAGE_TEST=1 $(PY) -m pytest -q -p no:cacheprovider -s tests/test_package.py

# Fuzzing of what mtcd reads from outside (tests/fuzz/): the AT reader, every
# reply parser, the APDU codec, the configuration loader and the control
# socket's requests; FUZZ_SECONDS per target, FUZZ_TARGETS to pick some.
# Coverage-guided with atheris, installed into the venv when a wheel or
# clang allows; else the seeded mutation engine, which `make test` also runs.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
.PHONY: fuzz
fuzz: venv
	@$(PY) -c 'import atheris' 2>/dev/null || $(PY) -m pip install -q atheris || \
	  echo "atheris did not install for this Python: the mutation engine runs instead"
	$(PY) tests/fuzz/run.py --seconds $(FUZZ_SECONDS) $(FUZZ_TARGETS)

clean:
	rm -rf $(VENV) $(BOOKWORM_VENV) build *.egg-info .pytest_cache .hypothesis
