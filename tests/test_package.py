"""The Debian packages and `make install`, tried as an operator would.

The install test (`make test-deb`, which builds the packages first) takes a
clean Debian bookworm root made by mmdebstrap (cached as a tarball under
.cache/), installs dist/mtcd_<version>_all.deb there with apt-get from
Debian's mirror alone, and runs the installed commands in a chroot against
the simulator, which runs here, outside, on a pty of this machine's
/dev/pts (bind-mounted into the chroot).  It needs root, unshare and
mmdebstrap; under plain `make test` it is skipped.

The other tests here are quick and always run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from simfixtures import TEST_PIN, make_card, sim_modem

REPO = Path(__file__).resolve().parents[1]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
DIST = REPO / "dist"
CACHE = REPO / ".cache"

package_test = pytest.mark.skipif(
    not os.environ.get("MTCD_PACKAGE_TEST"),
    reason="installs the .deb in a bookworm chroot: run by `make test-deb` (sets MTCD_PACKAGE_TEST=1)",
)


def test_versions_agree():
    """pyproject.toml, mtcd.__version__ and debian/changelog name one version:
    `make deb` names the file after pyproject.toml's."""
    import mtcd

    changelog = (REPO / "debian" / "changelog").read_text().splitlines()[0]
    assert re.match(rf"^mtcd \({re.escape(VERSION)}\) ", changelog), changelog
    assert mtcd.__version__ == VERSION


def test_bash_completion_parses():
    run = subprocess.run(["bash", "-n", str(REPO / "debian" / "completion" / "mtcd")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("page", ["mtcd.8", "mtcctl.8", "mtcd-sim.1"])
def test_man_pages_render_without_warnings(page):
    if not shutil.which("groff"):
        pytest.skip("groff is not installed (Debian: groff-base)")
    run = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(REPO / "debian" / "man" / page)],
                         capture_output=True, text=True)
    assert run.returncode == 0 and run.stderr == "", run.stderr


def test_man_pages_name_every_subcommand():
    """A subcommand added to a CLI and missing from its man page fails here."""
    from mtcd.cli import ctl, daemon

    for module, page in ((daemon, "mtcd.8"), (ctl, "mtcctl.8")):
        # roff writes a hyphen in a name as "\-" (log\-level).
        text = (REPO / "debian" / "man" / page).read_text().replace("\\-", "-")
        parser = module._parser()
        for action in parser._subparsers._group_actions:
            for name in action.choices:
                assert re.search(rf"^\.BI? \"?{re.escape(name)}\b", text, re.M), f"{page} lacks {name}"


# --- make install ------------------------------------------------------------

DEBIAN_PYTHON = Path("/usr/bin/python3")


def _debian_pip() -> bool:
    return subprocess.run([str(DEBIAN_PYTHON), "-m", "pip", "--version"], capture_output=True).returncode == 0


@pytest.mark.skipif(not DEBIAN_PYTHON.exists(), reason="needs Debian's /usr/bin/python3")
@pytest.mark.skipif(os.geteuid() != 0 and not _debian_pip(),
                    reason="needs python3-pip (`make install` installs it when run as root)")
# pip builds in the source tree (build/, *.egg-info): one `make install` at a time.
@pytest.mark.xdist_group("make-install")
def test_make_install_puts_commands_where_the_unit_looks(tmp_path):
    """`make install DESTDIR=...` with Debian's python3: /usr/bin/mtcd (the
    unit's ExecStart), the package in /usr/lib/python3/dist-packages, no
    simulator, and no build-machine path (a venv, pyenv) in any shebang,
    whatever `python3` is first on PATH."""
    stage = tmp_path / "stage"
    run = subprocess.run(["make", "-s", "install", f"DESTDIR={stage}", "INSTALL_DEPS=no"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    unit = (stage / "usr/lib/systemd/system/mtcd.service").read_text()
    exec_start = re.search(r"^ExecStart=(\S+)", unit, re.M).group(1)
    assert (stage / exec_start.lstrip("/")).is_file()
    for script in ("mtcd", "mtcctl"):
        first = (stage / "usr/bin" / script).read_text().splitlines()[0]
        assert first == "#!/usr/bin/python3", first
    assert (stage / "usr/lib/python3/dist-packages/mtcd/gate.py").is_file()
    assert not (stage / "usr/bin/mtcd-sim").exists()
    assert not (stage / "usr/lib/python3/dist-packages/mtcd/sim").exists()
    assert not (stage / "usr/local").exists()
    for path in stage.rglob("*"):
        if path.is_file() and not path.is_symlink():
            head = path.read_bytes()[:200]
            assert str(REPO).encode() not in head and b".pyenv" not in head, path


# --- the .deb in a clean bookworm root ----------------------------------------

def _debian_mirror() -> str:
    """The mirror this machine's apt uses for bookworm (deb822 sources)."""
    for source in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in source.read_text().split("\n\n"):
            fields = dict(re.findall(r"^(\S+):\s*(.*)$", stanza, re.M))
            if "bookworm" in fields.get("Suites", "").split() and "URIs" in fields:
                return fields["URIs"].split()[0]
    return "http://deb.debian.org/debian"


def _root_tarball() -> Path:
    tarball = CACHE / "bookworm-root.tar"
    if not tarball.exists():
        CACHE.mkdir(exist_ok=True)
        partial = tarball.with_suffix(".partial.tar")
        subprocess.run(["mmdebstrap", "--variant=apt", "--include=python3,systemd",
                        "bookworm", str(partial), _debian_mirror()], check=True, capture_output=True, timeout=900)
        partial.rename(tarball)
    return tarball


def _mounts_under(root: Path) -> list[str]:
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    return [line.split()[4] for line in mounts if line.split()[4].startswith(str(root))]


class Chroot:
    """Commands in the bookworm root, each in its own mount namespace: /dev
    and /proc are mounted there and vanish with it, never on this machine."""

    def __init__(self, root: Path):
        self.root = root

    def sh(self, script: str, stdin: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        wrapper = 'mount --rbind /dev "$1/dev" && mount -t proc proc "$1/proc" && exec chroot "$1" /bin/sh -c "$2"'
        return subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", wrapper, "sh", str(self.root), script],
            input=stdin, capture_output=True, text=True, timeout=timeout,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"},
        )


@pytest.fixture(scope="module")
def bookworm(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("the install test needs root (chroot, mount namespaces)")
    for tool in ("mmdebstrap", "unshare", "chroot"):
        assert shutil.which(tool), f"{tool} missing: `make test-deb` installs it"
    debs = {name: DIST / f"{name}_{VERSION}_all.deb" for name in ("mtcd", "mtcd-sim")}
    debs["python3-gsmmodem-new"] = next(iter(sorted(DIST.glob("python3-gsmmodem-new_*_all.deb"))), None)
    for name, deb in debs.items():
        assert deb and deb.exists(), f"no {name} package in dist/: `make deb` first"
    started = time.monotonic()
    root = tmp_path_factory.mktemp("bookworm") / "root"
    root.mkdir()
    subprocess.run(["tar", "-xf", str(_root_tarball()), "-C", str(root)], check=True)
    shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
    for deb in debs.values():
        shutil.copy(deb, root / "tmp" / deb.name)
    chroot = Chroot(root)
    chroot.debs = {name: f"/tmp/{deb.name}" for name, deb in debs.items()}
    yield chroot
    print(f"bookworm install test: {time.monotonic() - started:.0f} s")
    # Never remove a tree with something of this machine mounted inside it.
    assert not _mounts_under(root), _mounts_under(root)
    shutil.rmtree(root)


@pytest.fixture(scope="module")
def installed(bookworm):
    """mtcd installed with apt-get from Debian's own packages and nothing else."""
    # Fresh package lists: the cached root's would name versions the mirror
    # may no longer have.
    run = bookworm.sh(f"apt-get update -qq && apt-get install -y --no-install-recommends {bookworm.debs['mtcd']}")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    return bookworm


@package_test
def test_deb_installs_with_debians_packages_only(installed):
    run = installed.sh("dpkg-query -W -f='${Package} ${Version} ${Status}\\n' mtcd python3-cryptography python3-serial python3-systemd")
    lines = dict(line.split(" ", 1) for line in run.stdout.splitlines())
    assert lines["mtcd"] == f"{VERSION} install ok installed"
    for dep in ("python3-cryptography", "python3-serial", "python3-systemd"):
        assert lines[dep].endswith("install ok installed"), lines
    # Nothing of pip's: every module mtcd imports is dpkg's.
    run = installed.sh("python3 -c 'import mtcd.service, mtcd.cli.ctl, mtcd.cli.daemon, serial, cryptography, systemd.journal; "
                       "import sys; print(sorted({m.__file__.split(\"/\")[3] for m in (serial, cryptography, systemd)}))'")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "['python3']", run.stdout


@package_test
def test_commands_run_from_usr_bin(installed):
    run = installed.sh("command -v mtcd; command -v mtcctl; head -n1 /usr/bin/mtcd /usr/bin/mtcctl; mtcd --help; mtcctl --help")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("/usr/bin/mtcd\n/usr/bin/mtcctl\n")
    assert run.stdout.count("#!/usr/bin/python3") == 2
    assert "usage: mtcd" in run.stdout and "usage: mtcctl" in run.stdout


@package_test
def test_version_option(installed):
    help_text = installed.sh("mtcd --help").stdout
    if "--version" not in help_text:
        pytest.skip("mtcd has no --version option yet (mtcd/cli: issue 8 item 7)")
    for command in ("mtcd", "mtcctl"):
        run = installed.sh(f"{command} --version")
        assert run.returncode == 0 and VERSION in run.stdout, (run.stdout, run.stderr)


@package_test
def test_installed_unit_verifies_and_is_not_enabled(installed):
    run = installed.sh("systemd-analyze verify /lib/systemd/system/mtcd.service")
    assert run.returncode == 0, run.stdout + run.stderr
    # Not enabled on installation: with no PIN stored it would switch the radio off.
    run = installed.sh("systemctl is-enabled mtcd.service")
    assert run.stdout.strip() == "disabled", run.stdout + run.stderr
    # The README's command, once a PIN is stored, works on the installed unit.
    run = installed.sh("systemctl enable mtcd.service && systemctl is-enabled mtcd.service && systemctl disable mtcd.service")
    assert run.returncode == 0 and run.stdout.splitlines()[-1] == "enabled", run.stdout + run.stderr
    run = installed.sh("dpkg-query -W -f='${Conffiles}' mtcd")
    assert "/etc/mtcd/mtcd.toml" in run.stdout


@package_test
def test_catalog_udev_rule_and_man_pages_installed(installed):
    # systemd's dpkg trigger on /usr/lib/systemd/catalog rebuilt the index.
    run = installed.sh("journalctl --list-catalog")
    assert "mtcd" in run.stdout and "paired with this gateway" in run.stdout, run.stderr
    run = installed.sh("ls /lib/udev/rules.d/90-mtcd-modem.rules /usr/share/man/man8/mtcd.8.gz /usr/share/man/man8/mtcctl.8.gz "
                       "/usr/share/bash-completion/completions/mtcd /usr/share/bash-completion/completions/mtcctl")
    assert run.returncode == 0, run.stderr


@package_test
def test_no_simulator_on_a_gateway(installed):
    run = installed.sh("test ! -e /usr/bin/mtcd-sim && ! python3 -c 'import mtcd.sim' 2>/dev/null && ! python3 -c 'import mtcd.demo' 2>/dev/null")
    assert run.returncode == 0, "the simulator or the demo is in the mtcd package"


@package_test
def test_installed_commands_pair_against_the_simulator(installed):
    """`mtcctl pin set` then `mtcd once`: the installed code, on Debian's
    libraries, pairs a SIM served by the simulator on a pty of this machine."""
    card = make_card()
    with sim_modem(card) as (modem, port):
        config = (
            'state_dir = "/var/lib/mtcd-test"\n'
            f'[modem]\nport = "{port}"\ntimeout = 5\n'
            '[keystore]\nsealer = "file"\n'
            '[datalink]\nbackend = "at"\napn = "iot.example"\n'
            '[service]\ncontrol_socket = "/tmp/mtcd-test.sock"\n'
        )
        (installed.root / "tmp/mtcd-test.toml").write_text(config)
        run = installed.sh(f"mtcctl --config /tmp/mtcd-test.toml pin set {card.iccid}", stdin=TEST_PIN + "\n")
        assert run.returncode == 0, run.stderr
        run = installed.sh("mtcd --config /tmp/mtcd-test.toml once --json", timeout=120)
        assert run.returncode == 0, run.stdout + run.stderr
        report = json.loads(run.stdout.strip().splitlines()[-1])
        assert report["state"] == "paired" and report["iccid"] == str(card.iccid) and report["link"] == "up", report
        assert TEST_PIN not in run.stdout + run.stderr


@package_test
def test_sms_alert_codec_from_its_own_package(installed):
    """Without python3-gsmmodem-new the alerts module cannot load; with the
    package built from its sdist it encodes an SMS-SUBMIT PDU."""
    script = "python3 -c 'import mtcd.alerts'"
    assert installed.sh(script).returncode != 0
    run = installed.sh(f"apt-get install -y {installed.debs['python3-gsmmodem-new']} && {script} && "
                       "python3 -c 'from gsmmodem import pdu; print(pdu.encodeSmsSubmitPdu(\"+491701234567\", \"mtcd\")[0])'")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    assert re.search(r"^[0-9A-F]{20,}$", run.stdout.strip().splitlines()[-1]), run.stdout


@package_test
def test_simulator_package_installs_apart(installed):
    run = installed.sh(f"apt-get install -y {installed.debs['mtcd-sim']} && mtcd-sim --help && python3 -c 'import mtcd.demo'")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
