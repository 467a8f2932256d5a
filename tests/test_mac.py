"""mtcd.mac computes exactly what hashlib and hmac compute, on both of its
paths (the builtin SHA-256 below BUILTIN_LIMIT, OpenSSL's at or above it):
the keystore's MACs and the journal summary's checksum written by one
release must verify under the other."""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import given, settings
from hypothesis import strategies as st

from mtcd import mac


@settings(max_examples=300, deadline=None)
@given(key=st.binary(max_size=200), parts=st.lists(st.binary(max_size=300), max_size=8))
def test_hmac_sha256_is_hmac_sha256(key, parts):
    assert mac.hmac_sha256(key, parts) == hmac.new(key, b"".join(parts), hashlib.sha256).digest()


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=2000))
def test_sha256_is_sha256(data):
    assert mac.sha256(data) == hashlib.sha256(data).digest()


def test_long_messages_on_either_side_of_the_limit():
    key = bytes(range(65))  # longer than a block: hashed first
    for size in (mac.BUILTIN_LIMIT - 1, mac.BUILTIN_LIMIT, 3 * mac.BUILTIN_LIMIT + 7):
        data = bytes(i % 251 for i in range(size))
        halves = [data[: size // 2], data[size // 2:]]
        assert mac.hmac_sha256(key, halves) == hmac.new(key, data, hashlib.sha256).digest()
        assert mac.hmac_sha256(key, iter(halves)) == hmac.new(key, data, hashlib.sha256).digest()
        assert mac.sha256(data) == hashlib.sha256(data).digest()


def test_rfc4231_vector():
    # RFC 4231 test case 2.
    assert mac.hmac_sha256(b"Jefe", [b"what do ya want ", b"for nothing?"]).hex() == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")


def test_equal_compares_exactly():
    assert mac.equal(b"\x01" * 32, b"\x01" * 32)
    assert not mac.equal(b"\x01" * 32, b"\x01" * 31 + b"\x02")
    assert not mac.equal(b"\x01" * 32, b"\x01" * 31)
