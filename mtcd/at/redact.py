"""Finding a PIN or PUK in what the modem sends back, with no I/O.

A modem may repeat a secret it was sent: a late or doubled echo, the PIN
inside a `+CPIN:` or `^CPIN:` line, the PIN alone on a line, the APDU of
an AT+CSIM with the PIN block in hex.  `SecretPattern` finds every form of
a set of secrets mtcd has seen modems (or could expect them to) use:

* the digits, in one piece or with blanks between them, quoted or not;
* the first or last digits of a secret cut in two (a line break or lost
  bytes in the middle of an echo), as long as that piece has 4 digits;
* the digits as ASCII in hex, upper or lower case, the PIN block of
  TS 102 221 §9.5.1 inside an AT+CSIM APDU (with its FF padding);
* BCD-style F padding after the digits.

Short pieces (fewer than 6 digits) only count when no other digit touches
them (or a block's F padding follows them), so a 4-digit PIN is not found inside an IMEI or ICCID that happens
to contain it; 6 digits or more count anywhere, as does the hex form.
The one shape not caught: a 4- or 5-digit PIN cut in two, whose pieces
are too short to tell from ordinary numbers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..secret import Secret

REDACTED = "<redacted>"

MIN_PIECE = 4  # shortest cut-off piece of a secret that is still redacted
_ANYWHERE = 6  # digit runs this long are redacted even inside longer numbers
_GAP = "[ \t]*"  # what a modem may put between the characters of a secret
_PADDING = "[Ff]*"


def _spaced(text: str) -> str:
    return _GAP.join(re.escape(ch) for ch in text)


def _pieces(digits: str) -> set[str]:
    """The secret and its heads and tails that are still long enough."""
    out = {digits}
    for n in range(MIN_PIECE, len(digits)):
        out.add(digits[:n])
        out.add(digits[-n:])
    return out


def _forms(digits: str) -> list[str]:
    """Regular expressions for one secret, longest first (the alternation
    takes the first that matches at a position)."""
    decimal, hexadecimal = [], []
    for piece in sorted(_pieces(digits), key=len, reverse=True):
        body = _spaced(piece)
        if len(piece) < _ANYWHERE:
            # Inside an APDU, BCD digits follow the header's digits: the
            # padding (a block has at least 4 F) tells them apart there.
            decimal.append(f"{body}{_GAP}(?:[Ff]{_GAP}){{4,}}")
            body = f"(?<![0-9]){body}(?![0-9])"
        decimal.append(body + _PADDING)
        hexadecimal.append(_spaced(piece.encode("ascii").hex()) + _PADDING)
    return hexadecimal + decimal


class SecretPattern:
    """Every form of the given secrets in a line, and the line without them."""

    __slots__ = ("_regex",)

    def __init__(self, secrets: Iterable[Secret]):
        forms: list[str] = []
        for secret in secrets:
            forms += _forms(secret.reveal())
        # Longer forms first across secrets too (a PUK may contain the PIN).
        forms.sort(key=len, reverse=True)
        self._regex = re.compile("|".join(forms), re.IGNORECASE) if forms else None

    def __bool__(self) -> bool:
        return self._regex is not None

    def redact(self, line: str) -> tuple[str, bool]:
        """`line` with every form of a secret replaced by REDACTED, and
        whether there was one."""
        if self._regex is None:
            return line, False
        out, n = self._regex.subn(REDACTED, line)
        return out, n > 0

    def __repr__(self) -> str:
        return "SecretPattern(<redacted>)"


def only_redacted(line: str) -> bool:
    """Whether nothing but a secret (and quotes, blanks) was on the line:
    a bare repeat of the secret, not a line with its own meaning."""
    return not line.replace(REDACTED, "").strip(" \t\"',;")
