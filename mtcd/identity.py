"""Identities of the gateway (IMEI, IMEISV) and of the SIM (ICCID, IMSI).

Value types that validate on construction (TS 23.003 for IMEI/IMSI,
ITU-T E.118 for the ICCID) and decode the card's elementary files.
Parsing failures raise ValueError with a message that names the problem.
"""

from __future__ import annotations

from dataclasses import dataclass


def luhn_check_digit(payload: str) -> int:
    """The Luhn check digit to append to `payload` (a string of digits)."""
    total = 0
    # Walk from the right; the digit next to the (future) check digit is doubled.
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10


def luhn_valid(number: str) -> bool:
    return (
        len(number) >= 2
        and number.isascii()
        and number.isdigit()
        and luhn_check_digit(number[:-1]) == int(number[-1])
    )


def _digits(text: str, what: str) -> str:
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"{what} must be digits only")
    return text


def swapped_bcd_digits(data: bytes) -> str:
    """Digits of nibble-swapped BCD (low nibble first), stopping at F padding."""
    out = []
    for byte in data:
        for nibble in (byte & 0x0F, byte >> 4):
            if nibble == 0xF:
                return "".join(out)
            if nibble > 9:
                raise ValueError(f"invalid BCD nibble {nibble:X}")
            out.append(str(nibble))
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Imei:
    """International Mobile Equipment Identity: TAC(8) + serial(6) + Luhn digit."""

    value: str

    def __post_init__(self):
        v = _digits(self.value, "IMEI")
        if len(v) != 15:
            raise ValueError("IMEI must be 15 digits")
        if not luhn_valid(v):
            raise ValueError("IMEI check digit is wrong")
        object.__setattr__(self, "value", v)

    @classmethod
    def of_imeisv(cls, imeisv: "Imeisv") -> "Imei":
        """The IMEI of the device an IMEISV names: same TAC and serial
        number, then their Luhn check digit (TS 23.003 §6.2)."""
        body = imeisv.value[:14]
        return cls(body + str(luhn_check_digit(body)))

    @property
    def tac(self) -> str:
        return self.value[:8]

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Imeisv:
    """IMEI software version: TAC(8) + serial(6) + SVN(2), no check digit."""

    value: str

    def __post_init__(self):
        v = _digits(self.value, "IMEISV")
        if len(v) != 16:
            raise ValueError("IMEISV must be 16 digits")
        object.__setattr__(self, "value", v)

    @property
    def svn(self) -> str:
        return self.value[14:]

    def belongs_to(self, imei: Imei) -> bool:
        return self.value[:14] == imei.value[:14]

    def __str__(self) -> str:
        return self.value


_HEX_DIGITS = frozenset("0123456789ABCDEF")


@dataclass(frozen=True, slots=True)
class Iccid:
    """Integrated Circuit Card Identifier (E.118): 18 to 20 digits ending in a
    Luhn check digit, starting with the telecom industry prefix 89.

    Some operators (China Mobile among them) put the hex values A-F of the
    BCD nibbles into the issuer's account part.  Such an ICCID has no valid
    Luhn digit and is still the card's identity: accepted after the first
    six characters (prefix, country, issuer), upper-cased, unchecked.  An
    all-decimal ICCID keeps its check digit test (it catches typing slips)."""

    value: str

    def __post_init__(self):
        v = self.value.strip().upper() if isinstance(self.value, str) else self.value
        if not (isinstance(v, str) and v.isascii() and v[:6].isdigit() and set(v[6:]) <= _HEX_DIGITS):
            raise ValueError("ICCID must be digits only")  # (A-F after the sixth: see above)
        if not 18 <= len(v) <= 20:
            raise ValueError("ICCID must be 18 to 20 digits")
        if not v.startswith("89"):
            raise ValueError("ICCID must start with 89")
        if v.isdigit() and not luhn_valid(v):
            raise ValueError("ICCID check digit is wrong")
        object.__setattr__(self, "value", v)

    @classmethod
    def from_ef(cls, data: bytes) -> "Iccid":
        """Decode EF.ICCID (2FE2): 10 bytes of nibble-swapped BCD, F-padded
        (the padding is trailing: an F inside is an operator's hex digit)."""
        if len(data) != 10:
            raise ValueError(f"EF.ICCID must be 10 bytes, got {len(data)}")
        nibbles = "".join(f"{byte & 0x0F:X}{byte >> 4:X}" for byte in data)
        return cls(nibbles.rstrip("F"))

    def to_ef(self) -> bytes:
        """Encode as EF.ICCID content (used by the simulator's card)."""
        digits = self.value.ljust(20, "F")
        return bytes(
            int(digits[i + 1], 16) << 4 | int(digits[i], 16) for i in range(0, 20, 2)
        )

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Imsi:
    """International Mobile Subscriber Identity: MCC(3) + MNC(2-3) + MSIN, 6-15 digits."""

    value: str

    def __post_init__(self):
        v = _digits(self.value, "IMSI")
        if not 6 <= len(v) <= 15:
            raise ValueError("IMSI must be 6 to 15 digits")
        object.__setattr__(self, "value", v)

    @classmethod
    def from_ef(cls, data: bytes) -> "Imsi":
        """Decode EF.IMSI (6F07, TS 31.102 §4.2.2): length byte, then the
        parity nibble and digits, low nibble first."""
        if len(data) < 2 or data[0] == 0 or data[0] > len(data) - 1:
            raise ValueError("EF.IMSI has a bad length byte")
        body = data[1 : 1 + data[0]]
        first = body[0] >> 4
        if first > 9:
            raise ValueError("EF.IMSI has an invalid first digit")
        digits = str(first) + swapped_bcd_digits(body[1:])
        return cls(digits)

    def to_ef(self) -> bytes:
        """Encode as EF.IMSI content (9 bytes), for the simulator's card."""
        odd = len(self.value) % 2 == 1
        nibbles = [9 if odd else 1, int(self.value[0])]
        nibbles += [int(d) for d in self.value[1:]]
        if len(nibbles) % 2:
            nibbles.append(0xF)
        body = bytes(nibbles[i] | nibbles[i + 1] << 4 for i in range(0, len(nibbles), 2))
        return bytes([len(body)]) + body.ljust(8, b"\xff")

    def masked(self) -> str:
        """MCC+MNC and the length, the subscriber part hidden: for logs."""
        return self.value[:5] + "*" * (len(self.value) - 5)

    def __str__(self) -> str:
        return self.value
