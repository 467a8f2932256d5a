"""SHA-256 and HMAC-SHA256 for the keystore's MACs and the journal summary's
checksum, without OpenSSL where that is cheaper.

`import hmac` or `hashlib` maps and initialises OpenSSL's libcrypto: about
3.7 MiB of a process whose floor is 10.5 MiB, for `mtcctl status`, which
only checks the store's MAC over a few hundred bytes.  CPython's builtin
SHA-256 (`_sha256`, `_sha2` from 3.12) needs no libcrypto; HMAC is RFC 2104
on top of it, the construction the standard `hmac` module itself uses when
OpenSSL is missing.  Same function, same bytes: only the SHA-256 code
differs.  The builtin one is about 13 times slower on long input (50 ms for
5 MB here), so a message of BUILTIN_LIMIT bytes or more (a store of a few
hundred SIMs) goes to OpenSSL, where the 3.7 MiB are worth it.
"""

from __future__ import annotations

from collections.abc import Iterable

try:
    from _operator import _compare_digest as equal  # constant time; what hmac.compare_digest falls back to
except ImportError:  # pragma: no cover - an interpreter without it
    from hmac import compare_digest as equal

try:
    from _sha256 import sha256 as _builtin_sha256
except ImportError:  # Python 3.12 and later
    try:
        from _sha2 import sha256 as _builtin_sha256
    except ImportError:  # pragma: no cover - an interpreter built without them
        _builtin_sha256 = None

__all__ = ["BUILTIN_LIMIT", "equal", "hmac_sha256", "sha256"]

BUILTIN_LIMIT = 64 * 1024  # bytes of message; below it the builtin SHA-256 costs well under 1 ms
_BLOCK = 64  # SHA-256's block size in bytes
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def hmac_sha256(key: bytes, parts: Iterable[bytes]) -> bytes:
    """HMAC-SHA256 under `key` of the concatenation of `parts`."""
    parts = parts if isinstance(parts, (list, tuple)) else list(parts)
    if _builtin_sha256 is None or sum(map(len, parts)) >= BUILTIN_LIMIT:
        import hashlib
        import hmac

        mac = hmac.new(key, digestmod=hashlib.sha256)
        for part in parts:
            mac.update(part)
        return mac.digest()
    if len(key) > _BLOCK:
        key = _builtin_sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    inner = _builtin_sha256(key.translate(_IPAD))
    for part in parts:
        inner.update(part)
    return _builtin_sha256(key.translate(_OPAD) + inner.digest()).digest()


def sha256(data: bytes) -> bytes:
    """SHA-256 of `data` (the journal summary's checksum, a keystore bucket's digest)."""
    if _builtin_sha256 is None or len(data) >= BUILTIN_LIMIT:
        import hashlib

        return hashlib.sha256(data).digest()
    return _builtin_sha256(data).digest()
