"""Association-change alert by SMS to an operator number (`[alerts] sms_to`).

TS 22.368 §7.2.8 asks that a change of the ME–USIM association be reported
to the MTC server.  The journal event is always written; this SMS is the
optional second channel for fleets whose back end listens on a number.

The SMS goes out through the gateway's own modem in PDU mode (TS 27.005
§3.5.1 / §4.3):

    AT+CMGF=0                 PDU mode
    AT+CMGS=<tpdu length>     the modem answers "> " and waits
    <PDU in hex><Ctrl-Z>      SMS-SUBMIT, the SMSC field first (00: SIM default)
    +CMGS: <mr>  OK           the network took it; <mr> is the message reference

The PDU is built by python-gsmmodem-new's codec.  The text holds only
identities the gateway itself reads (ICCIDs, IMEIs, the time; the IMSI only
with `show_imsi = true`) and never a PIN: nothing here takes a Secret, and
one is refused if given.  It always fits one SMS of 160 GSM-7 characters
(the longest ICCIDs, IMEIs and IMSI included: `MAX_TEXT` is checked), so the
operator's number never receives half an alert.

Sending needs the radio on and a registered SIM, i.e. a paired gateway: this
module never changes the radio (guarantee 3).  The service calls it after a
paired decision that changed the association; after a refusal there is only
the journal (the modem would answer +CMS ERROR anyway).

From the transport it needs one method besides `execute()`, described by
`PromptTransport.send_with_prompt` below.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from gsmmodem import pdu as gsm_pdu

from .at.commands import AtCommand
from .at.reader import Response
from .errors import CommandFailed, ModemProtocolError
from .identity import Imsi
from .secret import Secret

CTRL_Z = b"\x1a"  # ends the PDU (TS 27.005 §3.5.1); ESC (0x1b) would cancel it
MAX_TEXT = 160  # GSM-7 characters in one SMS without a concatenation header
# The network may take long to accept a message; vendors document up to 120 s.
CMGS_TIMEOUT = 120.0

_NUMBER = re.compile(r"\+?[0-9]{3,20}")
# <mr> is 0-255: ASCII digits, at most three (int() of 5000 digits raises).
_CMGS = re.compile(r"\+CMGS:\s*([0-9]{1,3})(?![0-9])", re.IGNORECASE)


class PromptTransport(Protocol):
    """What sending an SMS needs from the transport."""

    def execute(self, command: AtCommand, timeout: float | None = None) -> Response:
        ...

    def send_with_prompt(self, command: AtCommand, payload: bytes,
                         timeout: float | None = None) -> Response:
        """Run a command that asks for a body after a "> " prompt (+CMGS).

        1. Write `command.encode()`; `command.expects_prompt` is True, so the
           AtReader yields a `Prompt` event when "> " arrives.
        2. If the command's final result comes first (ERROR, +CMS ERROR),
           return that Response: the payload is not written.
        3. On the Prompt, write `payload` exactly as given (the caller ends it
           with Ctrl-Z), then wait for the final result for `timeout`
           seconds (None: `max(command.timeout, transport timeout)`), and
           return the Response, whose `lines` hold the "+CMGS: <mr>" line.
        4. No prompt within the transport's ordinary timeout: write ESC
           (0x1b, cancels the entry), abandon the command as on any
           timeout, raise ModemUnavailable.  No final result after the
           payload in time: abandon, raise ModemUnavailable.
        Logs the command's `loggable` and the payload's length, never the
        payload (it holds identities).  Holds the command lock throughout,
        so nothing else is written between the command and its payload.
        """
        ...


@dataclass(frozen=True)
class AssociationChange:
    """What changed in the ME–USIM association (from the pairing journal).
    Identities are the digits as read (str, or mtcd's identity types); None
    where not known."""

    old_iccid: Any
    new_iccid: Any
    old_imei: Any
    new_imei: Any
    time: datetime
    imsi: Any = None  # the new SIM's IMSI; only sent with show_imsi

    def __post_init__(self):
        for name in ("old_iccid", "new_iccid", "old_imei", "new_imei", "imsi"):
            value = getattr(self, name)
            if isinstance(value, Secret):
                raise TypeError(f"alert field {name!r} is a secret; secrets are never sent")
            # Digits only: the text stays GSM-7 (a stray character would turn
            # the whole SMS into UCS-2, 70 characters).
            if value is not None and not (_show(value).isascii() and _show(value).isdigit()):
                raise ValueError(f"alert field {name!r} must be digits")
        if not isinstance(self.time, datetime):
            raise TypeError("alert time must be a datetime")

    @property
    def sim_changed(self) -> bool:
        return _show(self.old_iccid) != _show(self.new_iccid)

    @property
    def imei_changed(self) -> bool:
        return _show(self.old_imei) != _show(self.new_imei)


def alert_text(change: AssociationChange, *, show_imsi: bool = False) -> str:
    """The SMS text, e.g.

        mtcd: association changed: ICCID 8949020000000000014->8949020000000000022, IMEI 359999000000018, 2024-05-01T12:00:00Z

    An unchanged identity is given once, a changed one as old->new, an
    unknown one as "none"; the time is UTC.  At most `MAX_TEXT` GSM-7
    characters: 158 with 20-digit ICCIDs, both IMEIs and a 15-digit IMSI.
    """
    parts = [f"ICCID {_pair(change.old_iccid, change.new_iccid)}",
             f"IMEI {_pair(change.old_imei, change.new_imei)}"]
    if show_imsi and change.imsi is not None:
        parts.append(f"IMSI {_show(change.imsi)}")
    parts.append(change.time.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    text = f"mtcd: association changed: {', '.join(parts)}"
    if len(text) > MAX_TEXT:
        # Only malformed identities (longer than E.118 / TS 23.003 allow) get here.
        raise ValueError(f"alert text is {len(text)} characters, more than one SMS ({MAX_TEXT})")
    return text


@dataclass(frozen=True)
class SmsSubmit:
    """One SMS-SUBMIT as AT+CMGS takes it in PDU mode."""

    pdu: bytes  # SMSC address field (00) followed by the TPDU
    tpdu_length: int  # octets of the TPDU alone: the <length> of AT+CMGS

    @property
    def hex(self) -> str:
        return self.pdu.hex().upper()

    def command(self) -> AtCommand:
        return AtCommand(f"AT+CMGS={self.tpdu_length}", prefixes=("+CMGS:",),
                         timeout=CMGS_TIMEOUT, expects_prompt=True, name="cmgs")

    def payload(self) -> bytes:
        return self.hex.encode("ascii") + CTRL_Z


def check_number(number: str) -> str:
    """The operator's number as config.py accepts it: digits, an optional '+'."""
    if not isinstance(number, str) or not _NUMBER.fullmatch(number):
        raise ValueError(f"SMS number must be digits with an optional leading + (got {number!r})")
    return number


def encode_sms(number: str, text: str, *, reference: int = 0) -> list[SmsSubmit]:
    """SMS-SUBMIT PDUs for `text` to `number`: one for a text that fits one
    SMS (as alert_text's always does), a concatenated series otherwise.
    No status report is asked for (nothing here would read it)."""
    check_number(number)
    if not isinstance(text, str) or not text:
        raise ValueError("SMS text must be non-empty text")
    if not 0 <= reference <= 255:
        raise ValueError(f"message reference must be 0 to 255 (got {reference})")
    encoded = gsm_pdu.encodeSmsSubmitPdu(number, text, reference=reference,
                                         requestStatusReport=False)
    return [SmsSubmit(bytes(p.data), p.tpduLength) for p in encoded]


def parse_cmgs(lines: tuple[str, ...]) -> int:
    """The message reference from "+CMGS: <mr>[,<scts>]"."""
    for line in lines:
        m = _CMGS.match(line)
        if m:
            return int(m[1])
    raise ModemProtocolError(f"AT+CMGS: no +CMGS reference in the reply ({' | '.join(lines) or 'nothing'})")


def pdu_mode() -> AtCommand:
    return AtCommand("AT+CMGF=0", name="cmgf-pdu")


def send_sms(transport: PromptTransport, number: str, text: str) -> list[int]:
    """Send `text` to `number`; returns the message reference of each part.

    Raises CommandFailed when the modem refuses (e.g. +CMS ERROR: 331, no
    network service), ModemProtocolError when its reply makes no sense,
    ModemUnavailable when it does not answer.  The caller logs the failure
    and goes on: an alert that cannot go out must not touch the pairing.
    """
    parts = encode_sms(number, text)
    _require_ok(transport.execute(pdu_mode()))
    references = []
    for part in parts:
        command = part.command()
        response = transport.send_with_prompt(command, part.payload())
        _require_ok(response)
        references.append(parse_cmgs(response.lines))
    return references


def send_alert(transport: PromptTransport, number: str, change: AssociationChange,
               *, show_imsi: bool = False) -> list[int]:
    """The association-change SMS (see `alert_text` and `send_sms`)."""
    return send_sms(transport, number, alert_text(change, show_imsi=show_imsi))


def _require_ok(response: Response) -> None:
    result = response.result
    if result.ok:
        return
    detail = result.kind
    if result.code is not None:
        detail += f": {result.code}"
    elif result.text:
        detail += f": {result.text}"
    raise CommandFailed(response.command.loggable, detail,
                        result.code if result.kind == "CME ERROR" else None)


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, Imsi):
        return value.value
    return str(value)


def _pair(old: Any, new: Any) -> str:
    old_text, new_text = _show(old), _show(new)
    return new_text if old_text == new_text else f"{old_text}->{new_text}"
