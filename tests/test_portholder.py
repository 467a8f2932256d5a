"""Naming who holds a modem port: the /proc formats, parsed purely, and the
lookup against a real process holding a real pty exclusively."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from mtcd.portholder import describe_holder, flock_holder, holders_of, unit_of

V2 = "0::/system.slice/mtcd.service\n"
V1 = "12:pids:/system.slice/mtcd.service\n1:name=systemd:/system.slice/mtcd.service\n0::/\n"


def test_unit_from_cgroup_v2_and_v1():
    assert unit_of(V2) == "mtcd.service"
    assert unit_of(V1) == "mtcd.service"


def test_the_innermost_unit_wins_and_plain_cgroups_are_none():
    assert unit_of("0::/system.slice/docker-ab12.scope/init.scope\n") == "init.scope"
    assert unit_of("0::/user.slice/user-0.slice/session-3.scope\n") == "session-3.scope"
    assert unit_of("0::/\n") is None
    assert unit_of("4:memory:/x.service\n") is None  # a controller hierarchy, not systemd's
    assert unit_of("") is None


def test_flock_holder_from_proc_locks():
    dev = os.makedev(0, 0x19)
    text = ("1: POSIX  ADVISORY  WRITE 77 00:19:5 0 EOF\n"
            "2: FLOCK  ADVISORY  WRITE 812 00:19:4 0 EOF\n"
            "2: -> FLOCK  ADVISORY  WRITE 900 00:19:4 0 EOF\n")
    assert flock_holder(text, dev, 4) == 812
    assert flock_holder(text, dev, 5) is None  # a POSIX lock is not pyserial's
    assert flock_holder(text, os.makedev(8, 1), 4) is None


def test_a_real_exclusive_holder_is_named():
    master, slave = os.openpty()
    port = os.ttyname(slave)
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import serial, time; s = serial.Serial({port!r}, exclusive=True); "
                               "print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        # This process has the port open too (the pty's slave): the lock,
        # not the open descriptors, says who holds it.
        assert holder.pid in holders_of(port)
        said = describe_holder(port)
        assert re.fullmatch(rf"the port is held by (pid {holder.pid}|\S+\.service \(pid {holder.pid}\))", said), said
    finally:
        holder.kill()
        holder.wait()
        os.close(master)
        os.close(slave)


def test_nobody_to_name():
    assert describe_holder("/no/such/port") == ""
    assert holders_of("/no/such/port") == []
