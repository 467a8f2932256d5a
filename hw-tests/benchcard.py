"""The test SIM's card file (`--card card.toml`): its PIN and PUK, and what
the suite may expect of it.  Never printed, never passed on argv: the
values live in `Pin`/`Puk` objects, which refuse to print, and reach child
processes only on their standard input.

    # card.toml, mode 0600, owned by the person running the suite
    pin = "1234"                    # the card's current PIN (required)
    puk = "12345678"                # its PUK (needed by no test today; checked if given)
    iccid = "8949020000000000014"   # optional: the suite refuses any other card
    pin_tries = 3                   # optional: the card's full PIN counter (default 3)
    puk_tries = 10                  # optional: the card's full PUK counter (default 10)
"""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path

from mtcd.identity import Iccid
from mtcd.secret import Pin, Puk

_KEYS = {"pin", "puk", "iccid", "pin_tries", "puk_tries"}


class CardFileError(Exception):
    """One line naming what is wrong with the card file (never a value in it)."""


@dataclass(frozen=True)
class BenchCard:
    pin: Pin
    puk: Puk | None = None
    iccid: Iccid | None = None
    pin_tries: int = 3
    puk_tries: int = 10


def load_card(path: str | os.PathLike) -> BenchCard:
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise CardFileError(f"card file {path} does not exist") from None
    except OSError as exc:
        raise CardFileError(f"card file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise CardFileError(f"card file {path} is not a regular file")
    if st.st_mode & 0o077:
        raise CardFileError(f"card file {path} is open to others (mode {stat.S_IMODE(st.st_mode):04o}): "
                            f"chmod 600 {path}")
    if st.st_uid != os.getuid():
        raise CardFileError(f"card file {path} belongs to another user (uid {st.st_uid})")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        raise CardFileError(f"card file {path} is not valid TOML") from None
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise CardFileError(f"card file {path}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_KEYS))})")
    if "pin" not in data:
        raise CardFileError(f"card file {path} has no pin")
    try:
        pin = _secret(Pin, data["pin"], "pin")
        puk = _secret(Puk, data["puk"], "puk") if "puk" in data else None
        iccid = Iccid(str(data["iccid"])) if "iccid" in data else None
    except ValueError as exc:
        raise CardFileError(f"card file {path}: {exc}") from None
    tries = {}
    for key, default in (("pin_tries", 3), ("puk_tries", 10)):
        value = data.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 15:
            raise CardFileError(f"card file {path}: {key} must be a whole number from 1 to 15")
        tries[key] = value
    return BenchCard(pin, puk, iccid, **tries)


def _secret(kind, value, key: str):
    if not isinstance(value, str):
        # A number would lose leading zeros: the value is never shown, only its key.
        raise ValueError(f"{key} must be a quoted string of digits")
    return kind(value)
