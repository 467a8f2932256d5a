"""The long fuzzing run (`make fuzz`): each target for FUZZ_SECONDS.

    python tests/fuzz/run.py [--seconds N] [--engine atheris|mutate] [TARGET...]
    python tests/fuzz/run.py --merge [TARGET...]     # keep what atheris learnt
    python tests/fuzz/run.py --replay FILE TARGET    # one input, with its traceback

atheris (coverage-guided, libFuzzer) when it is installed; otherwise the
seeded mutation engine of tests/fuzz/engine.py, which is not guided by
coverage.  The saved corpus (tests/fuzz/corpus/TARGET) seeds both; what
atheris learns goes to build/fuzz/TARGET, and `--merge` adds to the saved
corpus the inputs of it that reach code the corpus did not.  A crashing,
hanging (over PER_INPUT seconds) or memory-hungry (over RSS_LIMIT_MB)
input goes to build/fuzz/crashes/, and the exit status is 1: replay it,
minimise it, fix the fault, and keep the input as
tests/fuzz/corpus/TARGET/fault-<what> beside a unit test.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORK = ROOT / "build" / "fuzz"
CRASHES = WORK / "crashes"
PER_INPUT = 5  # seconds one input may take: longer is a hang
RSS_LIMIT_MB = 1024
MAX_LEN = {"reader": 8192, "config": 16384}  # reader: past MAX_LINE, yet fast
# The targets of tests/fuzz/targets.py, named here so that the atheris
# child can instrument mtcd before anything imports it.
TARGET_NAMES = ("reader", "parser", "apdu", "config", "control")

sys.path.insert(0, str(HERE.parent))  # tests/: the package `fuzz`


def have_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def _shim(target: str) -> Path:
    """An executable that starts this script's atheris child for `target`:
    libFuzzer runs its own first argument again for --merge."""
    WORK.mkdir(parents=True, exist_ok=True)
    shim = WORK / f"{target}-fuzzer"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" --child {target} "$@"\n')
    shim.chmod(0o755)
    return shim


def atheris_child(target: str, libfuzzer_args: list[str]) -> None:
    """Runs in a process of its own: libFuzzer exits when it is done."""
    import atheris

    if "mtcd" in sys.modules:
        raise RuntimeError("mtcd was imported before atheris could instrument it")
    with atheris.instrument_imports(include=["mtcd", "tomllib", "json"]):
        from fuzz import targets
    atheris.Setup([str(WORK / f"{target}-fuzzer"), *libfuzzer_args], targets.TARGETS[target])
    atheris.Fuzz()


def atheris_run(target: str, seconds: int) -> bool:
    from fuzz import engine

    out = WORK / target
    out.mkdir(parents=True, exist_ok=True)
    CRASHES.mkdir(parents=True, exist_ok=True)
    words = WORK / f"{target}.dict"  # the target's tokens, in libFuzzer's dictionary format
    words.write_text("".join('"' + "".join(f"\\x{b:02x}" for b in token) + '"\n'
                             for token in engine.TOKENS.get(target, []) if len(token) <= 64))
    argv = [str(_shim(target)), f"-dict={words}", f"-max_total_time={seconds}", f"-timeout={PER_INPUT}",
            f"-rss_limit_mb={RSS_LIMIT_MB}", f"-max_len={MAX_LEN.get(target, 4096)}",
            f"-artifact_prefix={CRASHES}/{target}-", "-print_final_stats=1", str(out), str(HERE / "corpus" / target)]
    return subprocess.run(argv, cwd=ROOT).returncode == 0


def atheris_merge(target: str) -> bool:
    learnt = WORK / target
    if not learnt.is_dir():
        print(f"{target}: nothing learnt yet (run make fuzz first)")
        return True
    saved = HERE / "corpus" / target
    # Edges only (no hit counts): a small saved corpus that still reaches all the code.
    argv = [str(_shim(target)), "-merge=1", "-use_counters=0", f"-timeout={PER_INPUT}", f"-rss_limit_mb={RSS_LIMIT_MB}",
            f"-max_len={MAX_LEN.get(target, 4096)}", str(saved), str(learnt)]
    return subprocess.run(argv, cwd=ROOT).returncode == 0


def mutate_run(target: str, seconds: int) -> bool:
    from fuzz import engine, targets

    last = []
    try:
        ran = engine.run(target, targets.TARGETS[target], seconds=seconds, per_input=PER_INPUT,
                         max_len=MAX_LEN.get(target, 4096), seed=int.from_bytes(os.urandom(4), "big"),
                         on_input=lambda data: last.__setitem__(slice(None), [data]))
    except BaseException as exc:  # noqa: BLE001 - a fault: report it with its input
        if isinstance(exc, KeyboardInterrupt):
            raise
        CRASHES.mkdir(parents=True, exist_ok=True)
        data = getattr(exc, "fuzz_input", last[0] if last else b"")
        path = CRASHES / f"{target}-{type(exc).__name__}-{abs(hash(data)):x}"
        path.write_bytes(data)
        traceback.print_exc()
        print(f"{target}: FAULT {type(exc).__name__}; input saved as {path}")
        return False
    print(f"{target}: {ran} inputs in {seconds} s, no fault (mutation engine)")
    return True


def replay(target: str, path: Path) -> None:
    from fuzz import targets

    targets.TARGETS[target](path.read_bytes())
    print(f"{target}: {path} passes")


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":  # the shim: TARGET, then libFuzzer's flags
        atheris_child(sys.argv[2], sys.argv[3:])
        return 0
    ap = argparse.ArgumentParser(description="Fuzz mtcd's parsers of outside input.")
    ap.add_argument("targets", nargs="*", metavar="TARGET",
                    help=f"what to fuzz (default: all of {', '.join(TARGET_NAMES)})")
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", "60")),
                    help="seconds per target (default: FUZZ_SECONDS or 60)")
    ap.add_argument("--engine", choices=("atheris", "mutate"),
                    help="atheris when installed, else the mutation engine")
    ap.add_argument("--merge", action="store_true",
                    help="add to tests/fuzz/corpus the inputs atheris found that reach new code")
    ap.add_argument("--replay", type=Path, metavar="FILE", help="run one saved input through TARGET")
    args = ap.parse_args()
    unknown = [t for t in args.targets if t not in TARGET_NAMES]
    if unknown:
        ap.error(f"unknown target {unknown[0]!r}; known: {', '.join(TARGET_NAMES)}")
    names = args.targets or list(TARGET_NAMES)
    if args.replay:
        if len(names) != 1:
            ap.error("--replay needs exactly one TARGET")
        replay(names[0], args.replay)
        return 0
    engine = args.engine or ("atheris" if have_atheris() else "mutate")
    if engine == "atheris" and not have_atheris():
        ap.error("atheris is not installed (pip install atheris; it needs a wheel for this Python or clang)")
    if args.merge:
        if engine != "atheris":
            ap.error("--merge needs atheris")
        return 0 if all([atheris_merge(name) for name in names]) else 1
    if engine == "mutate":
        print("the seeded mutation engine runs (not coverage-guided)" + ("" if args.engine else
              ": atheris is not installed"))
    failed = []
    for name in names:
        print(f"== fuzzing {name} for {args.seconds} s with {engine}", flush=True)
        ok = atheris_run(name, args.seconds) if engine == "atheris" else mutate_run(name, args.seconds)
        if not ok:
            failed.append(name)
    if failed:
        print(f"faults in: {', '.join(failed)} (inputs under {CRASHES})")
        return 1
    print(f"no fault in {len(names)} target(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
