"""What one process costs: wall time, peak memory (max RSS), bytes read and
written through system calls, exit code.  Shared by the bench scripts.

Linux carries a process's peak RSS across fork and exec, so a command
started straight from a bench script that holds 40 MB (the simulator, a
10,000-SIM store) would report at least 40 MB.  The command is started from
a small launcher (`python -S`, about 9 MB, below any Python command's own
peak) instead, which reads the command's /proc/PID/io while it is a zombie
and reports.
"""

from __future__ import annotations

import json
import subprocess
import sys

_LAUNCHER = r"""
import json, os, sys, time
argv = json.loads(sys.argv[1])
null = os.open(os.devnull, os.O_WRONLY)
start = time.perf_counter()
pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, null, 1), (os.POSIX_SPAWN_DUP2, null, 2)])
os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
wall = time.perf_counter() - start
io = dict(line.split(": ") for line in open(f"/proc/{pid}/io").read().splitlines())
_, status, usage = os.wait4(pid, 0)
print(json.dumps({"wall": wall, "rss": usage.ru_maxrss / 1024, "read": int(io["rchar"]),
                  "written": int(io["wchar"]), "code": os.waitstatus_to_exitcode(status)}))
"""


def measure(argv: list[str], env: dict, stdin: str | None = None) -> dict:
    """{"wall": s, "rss": MiB, "read": bytes, "written": bytes, "code": exit code}."""
    done = subprocess.run([sys.executable, "-S", "-c", _LAUNCHER, json.dumps(argv)], input=(stdin or "").encode(),
                          capture_output=True, env=env, check=True)
    return json.loads(done.stdout)
