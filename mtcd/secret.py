"""Secrets (PIN, PUK) as types that refuse to show their value.

A secret only leaves this type through `reveal()`, whose callers are few:
the code that encodes the AT command or APDU carrying it (marked sensitive,
never logged), the keystore that seals it, and the AT reader's redaction
(mtcd.at.redact), which looks for it in the modem's replies to take it out.
`str()`, `repr()`, f-strings, pickling and JSON all see a placeholder or fail.
"""

from __future__ import annotations

# hmac and secrets (for compare_digest and PIN generation) load OpenSSL's
# libcrypto, several MB: imported where used, not by every `mtcctl --help`.


class Secret:
    __slots__ = ("_value",)
    kind = "secret"
    min_digits = 1
    max_digits = 64

    def __init__(self, value: str):
        if not isinstance(value, str):
            raise TypeError(f"{self.kind} must be given as text")
        if not (value.isascii() and value.isdigit()):
            raise ValueError(f"{self.kind} must be digits only")
        if not self.min_digits <= len(value) <= self.max_digits:
            if self.min_digits == self.max_digits:
                raise ValueError(f"{self.kind} must be {self.min_digits} digits")
            raise ValueError(
                f"{self.kind} must be {self.min_digits} to {self.max_digits} digits"
            )
        object.__setattr__(self, "_value", value)

    def __setattr__(self, name, value):
        raise AttributeError(f"{self.kind} is immutable")

    def reveal(self) -> str:
        """The value itself: only for the command that carries it and the sealer."""
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        return f"<{self.kind} ****>"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        from .mac import equal  # constant time, without loading OpenSSL (hmac) for it

        return equal(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        raise TypeError(f"{self.kind} is not hashable")

    def __reduce__(self):
        raise TypeError(f"{self.kind} cannot be pickled")


class Pin(Secret):
    """PIN1 of the UICC: 4 to 8 digits (ETSI TS 102 221 §9.5)."""

    __slots__ = ()
    kind = "PIN"
    min_digits = 4
    max_digits = 8

    @classmethod
    def generate(cls, length: int = 8) -> "Pin":
        """A fresh random PIN from the system CSPRNG (TR 33.868: use all 8 digits)."""
        if not cls.min_digits <= length <= cls.max_digits:
            raise ValueError(f"PIN length must be {cls.min_digits} to {cls.max_digits}")
        import secrets

        return cls("".join(secrets.choice("0123456789") for _ in range(length)))


class Puk(Secret):
    """PUK1 (unblocking key): 8 digits."""

    __slots__ = ()
    kind = "PUK"
    min_digits = 8
    max_digits = 8
