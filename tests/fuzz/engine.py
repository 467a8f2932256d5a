"""A small deterministic mutation engine: the saved corpus of a target,
then inputs made from it by seeded mutations (byte flips, insertions,
deletions, repeats, splices and the target's tokens).

It is not coverage-guided; `make fuzz` uses atheris for that when it is
installed.  This engine is what `make test` runs (the same inputs on
every machine, a few seconds in all) and what `make fuzz` falls back to.
Each input gets at most `per_input` seconds (SIGALRM): a hang is a fault.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"

# Tokens that reach deep into each target faster than random bytes do.
TOKENS: dict[str, list[bytes]] = {
    "reader": [b"\r", b"\n", b"\r\n", b"\r\r\n", b"OK\r\n", b"ERROR\r\n", b"+CME ERROR: ", b"+CMS ERROR: ",
               b"> ", b"RING\r\n", b"+CPIN: ", b"SIM PIN", b"\x00", b"\xff", b"\x1b", b"\x7f", b"AT+CPIN=",
               b'"71539284"', b"7153 9284", b"3731353339323834", b"CONNECT ", b"COMMAND NOT SUPPORT",
               b"x" * 600, b"\r\n" * 40],
    "parser": [b"\n", b",", b'"', b"SIM PIN", b"SIM PUK", b"READY", b"89", b"F", b"FF", b"9000", b"63C3",
               b"144,0,", b"\xc2\xb2", b"\xd9\xa3", b"\xef\xbc\x91", b"-1", b"99999999", b"0" * 30, b"usbnet",
               b"SC", b"1_0", b" ", b"\t", b"\xf0\x9d\x9f\x8f"],
    "apdu": [b"\x90\x00", b"\x63\xc3", b"\x69\x83", b"\x61\x10", b"\x6c\x00", b"\x00\x20\x00\x01\x08",
             b"\x98", b"\xff" * 8, b"12345678"],
    "config": [b"[modem]\n", b"[policy]\n", b"[datalink]\n", b"[service]\n", b"[keystore]\n", b"[alerts]\n",
               b'port = "/dev/ttyUSB2"\n', b"state_dir = ", b"min_retries = ", b"rotate_every = ",
               b"backend = ", b"up = [", b"]", b"[[", b"\x00", b"=", b'"', b"'''", b'"""', b"\\u0000",
               b"1" * 4400, b"1e999", b"inf", b"nan", b"0x", b"1979-05-27T07:32:00Z", b"{", b"}", b"\xef\xbb\xbf",
               b"[" * 60, b'"/var/lib/mtcd"', b'"ppp"', b'"command"', b'"qmi"', b'ppp_port = "/dev/ttyUSB3"\n'],
    "control": [b'{"command":', b'"status"', b'"stage"', b'"adopt"', b'"unblock"', b'"pin-try"', b'"rotate"',
                b'"pin":', b'"puk":', b'"new_pin":', b'"iccid":', b'"length":', b'"transport_pin":',
                b'"12345678"', b"}", b"{", b"[", b"]", b"null", b"true", b"1" * 4400, b"1e999", b"NaN",
                b"\\u0000", b"\\ud800", b'"ok":false', b'"exit_code":', b'"error":', b'"details":{',
                b'"result":{}', b'"ok":true', b"[" * 2000],
}


class Hang(Exception):
    """One input took longer than allowed."""


def _alarm(signum, frame):
    raise Hang


def corpus(target: str) -> list[tuple[str, bytes]]:
    """The saved inputs of `target` (name, bytes), sorted by name."""
    where = CORPUS / target
    if not where.is_dir():
        return []
    return [(p.name, p.read_bytes()) for p in sorted(where.iterdir()) if p.is_file()]


def mutate(rng: random.Random, data: bytes, pool: list[bytes], tokens: list[bytes], max_len: int) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        pos = rng.randint(0, len(out))
        if op == 0 and out:  # flip bits of a byte
            i = rng.randrange(len(out))
            out[i] ^= 1 << rng.randrange(8)
        elif op == 1:  # a random byte
            out[pos:pos] = bytes([rng.randrange(256)])
        elif op == 2 and out:  # delete a range
            end = min(len(out), pos + rng.randint(1, 16))
            del out[pos:end]
        elif op == 3 and out:  # repeat a range
            start = rng.randrange(len(out))
            piece = out[start : start + rng.randint(1, 32)]
            out[pos:pos] = piece * rng.randint(1, 8)
        elif op == 4 and pool:  # splice in a piece of another input
            other = rng.choice(pool)
            if other:
                start = rng.randrange(len(other))
                out[pos:pos] = other[start : start + rng.randint(1, 64)]
        elif op in (5, 6) and tokens:
            out[pos:pos] = rng.choice(tokens)
        if op == 0 and out[:1] and rng.random() < 0.2:  # the header byte picks the target's branch
            out[0] = rng.randrange(256)
    return bytes(out[:max_len])


def run(target: str, fn: Callable[[bytes], None], *, seed: int = 1, count: int = 1000,
        seconds: float | None = None, per_input: float = 2.0, max_len: int = 8192,
        on_input: Callable[[bytes], None] | None = None) -> int:
    """The corpus, then `count` mutated inputs (or as many as fit in
    `seconds`).  Returns how many inputs ran; the first fault propagates
    with the input attached as `exc.fuzz_input`."""
    seeds = [data for _, data in corpus(target)] or [b""]
    tokens = TOKENS.get(target, [])
    rng = random.Random(f"{target}:{seed}")
    # SIGALRM cuts a hang short; outside the main thread (where signals
    # cannot be set) a slow input is caught after it returns.
    alarm = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGALRM, _alarm) if alarm else None
    ran = 0
    deadline = None if seconds is None else time.monotonic() + seconds
    try:
        inputs = iter(seeds)
        while True:
            data = next(inputs, None)
            if data is None:
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if deadline is None and ran >= len(seeds) + count:
                    break
                data = mutate(rng, rng.choice(seeds), seeds, tokens, max_len)
            if on_input is not None:
                on_input(data)
            if alarm:
                signal.setitimer(signal.ITIMER_REAL, per_input)
            started = time.monotonic()
            try:
                fn(data)
                if time.monotonic() - started > per_input:
                    raise Hang
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt):
                    raise
                exc.fuzz_input = data
                raise
            finally:
                if alarm:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            ran += 1
    finally:
        if alarm:
            signal.signal(signal.SIGALRM, old)
    return ran
