"""One pure parser per AT reply (TS 27.007), named after the command.

Each takes the information lines of a `Response` (echo and final result
already removed by the reader) and returns a typed value, or raises
`ModemProtocolError` naming the command and what was wrong.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..errors import ModemProtocolError
from ..identity import Iccid, Imei, Imeisv, Imsi
from ..simlock import PinAttempts, SimLock


def split_fields(text: str) -> list[str]:
    """Split a comma-separated AT parameter list, honouring double quotes.
    Fields are stripped of surrounding blanks and of their quotes."""
    fields: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            fields.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if quoted:
        raise ModemProtocolError("unbalanced quotes in reply")
    fields.append("".join(cur).strip())
    return fields


def info_fields(lines: Sequence[str], prefix: str) -> list[list[str]]:
    """The fields of every line starting with `prefix` (e.g. '+CPINR:'),
    matched case-insensitively and with any blanks after the colon."""
    out = []
    for line in lines:
        if line[: len(prefix)].upper() == prefix.upper():
            out.append(split_fields(line[len(prefix):]))
    return out


# --- helpers ---------------------------------------------------------------

_NUMBER = re.compile(r"[0-9]{1,6}")
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})*")


def _snippet(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")


def _number(command: str, what: str, text: str, limit: int = 255) -> int:
    """A decimal field, strictly ASCII digits (int() would also take '1_0' or
    Unicode digits)."""
    if not _NUMBER.fullmatch(text) or int(text) > limit:
        raise ModemProtocolError(f"{command}: {what} {_snippet(text)} is not a number from 0 to {limit}")
    return int(text)


def _hex(command: str, what: str, text: str) -> bytes:
    if not _HEX.fullmatch(text):
        raise ModemProtocolError(f"{command}: {what} is not an even number of hex digits")
    return bytes.fromhex(text)


def _rows(command: str, lines: Sequence[str], prefix: str) -> list[list[str]]:
    """`info_fields`, with the command named when a line does not split."""
    try:
        return info_fields(lines, prefix)
    except ModemProtocolError as e:
        raise ModemProtocolError(f"{command}: {e}") from None


def _one(command: str, rows: list[list[str]], prefix: str) -> list[str]:
    if not rows:
        raise ModemProtocolError(f"{command}: no {prefix} line in the reply")
    if len(rows) > 1:
        raise ModemProtocolError(f"{command}: {len(rows)} {prefix} lines where one was expected")
    return rows[0]


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1].strip()
    return text


def _identity_value(command: str, lines: Sequence[str], prefixes: Sequence[str]) -> str:
    """The one value of a reply that some modems give bare and others behind
    a prefix, quoted or not (+CGSN, +CIMI, +CCID...)."""
    values = []
    for line in lines:
        if not line.strip():
            continue
        value = line
        for prefix in prefixes:
            if line[: len(prefix)].upper() == prefix.upper():
                value = line[len(prefix):]
                break
        values.append(_unquote(value))
    if not values:
        raise ModemProtocolError(f"{command}: empty reply")
    if len(values) > 1:
        raise ModemProtocolError(f"{command}: {len(values)} lines where one was expected")
    return values[0]


def _normalise_code(text: str) -> str:
    # Quectel's older firmware spells the phone lock "PH_SIM PIN": the
    # underscore stands for 27.007's hyphen.  (A "SIM_PIN" thus becomes
    # "SIM-PIN", never "SIM PIN": only the exact code gets a PIN.)
    return " ".join(text.upper().replace("_", "-").split())


# --- SIM lock state --------------------------------------------------------

_SIM_LOCKS = {lock.value: lock for lock in SimLock}


def parse_cpin(lines: Sequence[str]) -> SimLock:
    """AT+CPIN? -> `+CPIN: <code>` (TS 27.007 §8.3).  The code is matched
    whole, so `SIM PIN2` is never taken for `SIM PIN`; an unknown code is
    OTHER, which the policy never answers with a PIN."""
    codes = set()
    for fields in _rows("AT+CPIN?", lines, "+CPIN:"):
        code = _normalise_code(fields[0])
        if not code:
            raise ModemProtocolError("AT+CPIN?: empty code in +CPIN line")
        codes.add(code)
    if not codes:
        raise ModemProtocolError("AT+CPIN?: no +CPIN line in the reply")
    if len(codes) > 1:
        # The card changed state mid-reply: asking again beats guessing.
        raise ModemProtocolError("AT+CPIN?: conflicting codes " + ", ".join(sorted(codes)))
    return _SIM_LOCKS.get(codes.pop(), SimLock.OTHER)


def parse_cpinr(lines: Sequence[str]) -> PinAttempts:
    """AT+CPINR -> `+CPINR: <code>,<retries>[,<default retries>]` per code
    (TS 27.007 §8.65).  PIN1 from the SIM PIN line, PUK1 from SIM PUK."""
    found: dict[str, int | None] = {}
    for fields in _rows("AT+CPINR", lines, "+CPINR:"):
        code = _normalise_code(fields[0])
        if code not in ("SIM PIN", "SIM PUK"):
            continue  # PIN2, PH-... codes: not ours
        if len(fields) < 2 or (code == "SIM PIN" and not fields[1]):
            raise ModemProtocolError(f"AT+CPINR: no retry count for {code}")
        left = _number("AT+CPINR", f"{code} retries", fields[1], 15) if fields[1] else None
        if found.get(code, left) != left:
            raise ModemProtocolError(f"AT+CPINR: conflicting retry counts for {code}")
        found[code] = left
    if "SIM PIN" not in found:
        raise ModemProtocolError("AT+CPINR: no SIM PIN line in the reply")
    return PinAttempts(pin1=found["SIM PIN"], puk1=found.get("SIM PUK"), source="+CPINR")


def parse_clck(lines: Sequence[str]) -> bool:
    """AT+CLCK="SC",2 -> `+CLCK: <status>[,<class>]` (TS 27.007 §7.4);
    True when PIN1 is enabled."""
    statuses = {
        _number('AT+CLCK="SC",2', "status", fields[0], 1)
        for fields in _rows('AT+CLCK="SC",2', lines, "+CLCK:")
    }
    if not statuses:
        raise ModemProtocolError('AT+CLCK="SC",2: no +CLCK line in the reply')
    if len(statuses) > 1:
        raise ModemProtocolError('AT+CLCK="SC",2: conflicting status lines')
    return statuses.pop() == 1


# --- SIM access ------------------------------------------------------------

def parse_crsm(lines: Sequence[str]) -> tuple[int, int, bytes]:
    """AT+CRSM -> `+CRSM: <sw1>,<sw2>[,<response>]` (TS 27.007 §8.18);
    sw1/sw2 in decimal, response in hex, quoted or not."""
    fields = _one("AT+CRSM", _rows("AT+CRSM", lines, "+CRSM:"), "+CRSM")
    if len(fields) not in (2, 3):
        raise ModemProtocolError(f"AT+CRSM: expected 2 or 3 fields, got {len(fields)}")
    sw1 = _number("AT+CRSM", "sw1", fields[0])
    sw2 = _number("AT+CRSM", "sw2", fields[1])
    data = _hex("AT+CRSM", "response", fields[2]) if len(fields) == 3 else b""
    return sw1, sw2, data


def parse_csim(lines: Sequence[str]) -> bytes:
    """AT+CSIM -> `+CSIM: <length>,"<response>"` (TS 27.007 §8.17): the
    response APDU with its status word; length counts hex characters."""
    fields = _one("AT+CSIM", _rows("AT+CSIM", lines, "+CSIM:"), "+CSIM")
    if len(fields) != 2:
        raise ModemProtocolError(f"AT+CSIM: expected 2 fields, got {len(fields)}")
    length = _number("AT+CSIM", "length", fields[0], 1024)
    if length != len(fields[1]):
        raise ModemProtocolError(
            f"AT+CSIM: length field says {length} but the response has {len(fields[1])} characters"
        )
    data = _hex("AT+CSIM", "response", fields[1])
    if len(data) < 2:
        raise ModemProtocolError("AT+CSIM: response has no status word")
    return data


# --- identities and state --------------------------------------------------

def parse_imei(lines: Sequence[str]) -> Imei:
    """AT+CGSN -> bare IMEI, `+CGSN: <imei>` or `+CGSN: "<imei>"`."""
    value = _identity_value("AT+CGSN", lines, ("+CGSN:",))
    try:
        return Imei(value)
    except ValueError as e:
        raise ModemProtocolError(f"AT+CGSN: {e}") from None


def parse_imeisv(lines: Sequence[str]) -> Imeisv:
    """AT+CGSN=2 -> IMEISV in the same forms as the IMEI."""
    value = _identity_value("AT+CGSN=2", lines, ("+CGSN:",))
    try:
        return Imeisv(value)
    except ValueError as e:
        raise ModemProtocolError(f"AT+CGSN=2: {e}") from None


def parse_imsi(lines: Sequence[str]) -> Imsi:
    """AT+CIMI -> bare IMSI (TS 27.007 §5.6), or `+CIMI: <imsi>` on some
    modems.  Errors never show the IMSI itself."""
    value = _identity_value("AT+CIMI", lines, ("+CIMI:",))
    try:
        return Imsi(value)
    except ValueError as e:
        raise ModemProtocolError(f"AT+CIMI: {e}") from None


# Reply prefixes of the vendor ICCID commands: AT+CCID, AT+ICCID (SIMCom),
# AT+QCCID (Quectel), AT^ICCID? (Huawei).
ICCID_PREFIXES = ("+CCID:", "+QCCID:", "+ICCID:", "^ICCID:")


def parse_iccid(lines: Sequence[str]) -> Iccid:
    """A vendor ICCID reply, bare or behind one of `ICCID_PREFIXES`, quoted
    or not, with the F padding of 19-digit ICCIDs removed.  Errors never
    show the ICCID itself."""
    value = _identity_value("ICCID query", lines, ICCID_PREFIXES).rstrip("Ff")
    try:
        return Iccid(value)
    except ValueError as e:
        raise ModemProtocolError(f"ICCID query: {e}") from None


def parse_cfun(lines: Sequence[str]) -> int:
    """AT+CFUN? -> `+CFUN: <fun>` (TS 27.007 §8.2); vendors add values above 4."""
    fields = _one("AT+CFUN?", _rows("AT+CFUN?", lines, "+CFUN:"), "+CFUN")
    return _number("AT+CFUN?", "level", fields[0])


def parse_cgmi(lines: Sequence[str]) -> str:
    """AT+CGMI -> the manufacturer, bare or behind `+CGMI:`, lines joined
    (some modems split it).  Commas are part of the name."""
    parts = []
    for line in lines:
        if line[:6].upper() == "+CGMI:":
            line = line[6:]
        line = _unquote(line)
        if line:
            parts.append(line)
    if not parts:
        raise ModemProtocolError("AT+CGMI: empty reply")
    return " ".join(parts)


def parse_identity_text(lines: Sequence[str], command: str, prefixes: Sequence[str]) -> str:
    """AT+CGMM / AT+CGMR -> the text, bare or behind one of `prefixes`
    (`+CGMR:`, Quectel's `Revision:`), lines joined."""
    parts = []
    for line in lines:
        for prefix in prefixes:
            if line[: len(prefix)].upper() == prefix.upper():
                line = line[len(prefix):]
                break
        line = _unquote(line)
        if line:
            parts.append(line)
    if not parts:
        raise ModemProtocolError(f"{command}: empty reply")
    return " ".join(parts)


def parse_registration(lines: Sequence[str], prefix: str) -> int:
    """AT+CREG? / AT+CEREG? -> `<prefix>: <n>,<stat>[,...]` -> stat (§7.2, §10.1.22)."""
    command = f"AT{prefix}?"
    fields = _one(command, _rows(command, lines, prefix + ":"), prefix)
    if len(fields) < 2:
        raise ModemProtocolError(f"{command}: no <stat> field")
    return _number(command, "stat", fields[1])


def parse_csq(lines: Sequence[str]) -> int:
    """AT+CSQ -> `+CSQ: <rssi>,<ber>` -> rssi (§8.5; 99: not known)."""
    fields = _one("AT+CSQ", _rows("AT+CSQ", lines, "+CSQ:"), "+CSQ")
    return _number("AT+CSQ", "rssi", fields[0])
