"""`mtcctl sim pairing-status [--json]`: the inserted card's own pairing
record (TS 31.102 EF-IPS, with EF-IPD where the card lets it be read), as
the card keeps it; read-only.

With the service running, the record comes from the service's read-only
"doctor" command (it holds the port): the newest records only
(mtcd.doctor_probe.CARD_RECORDS).  Without it, the card is reached here
the way [uicc] backend says (AT+CRSM through the modem, APDUs over
AT+CSIM, or the PC/SC reader), every record of EF-IPS is read, and the
port or the reader is let go.  Exit 0 whatever the card answered (an absent
or unreadable file is part of the answer); 69 when the modem or the reader
cannot be reached, or no card is in it.
"""

from __future__ import annotations

from ..control import ControlClient
from ..errors import EXIT_OK, ModemUnavailable
from .common import print_json


class _ModemGone(ModemUnavailable):
    pass


def _through_service(client: ControlClient) -> dict:
    answer = client.call("doctor")
    modem = answer.get("modem")
    if not isinstance(modem, dict) or not modem.get("reachable", False):
        why = (modem or {}).get("error") if isinstance(modem, dict) else None
        raise _ModemGone(why or answer.get("modem_error") or "the service has no modem session")
    record = modem.get("card_pairing_record")
    if not isinstance(record, dict):
        why = (modem.get("unreadable") or {}).get("card_pairing_record") or "the SIM is not present"
        raise _ModemGone(f"the card's pairing record was not read: {why}")
    return record


def _directly(config) -> dict:
    backend = config.uicc.backend
    if backend == "pcsc":
        # The card is in a reader: no modem to open.
        from ..card.pcsc import PcscChannel

        return _read(backend, channel=PcscChannel(config.uicc.reader))
    from ..modem import Modem
    from ..transport import SerialTransport

    m = config.modem
    with SerialTransport(m.port, m.baudrate, rtscts=m.rtscts, timeout=m.timeout) as transport:
        modem = Modem(transport)
        modem.initialise()
        if backend == "csim":
            from ..card.channel import CsimChannel

            return _read(backend, modem, CsimChannel(modem))
        return _read(backend, modem)


def _read(backend: str, modem=None, channel=None) -> dict:
    """Every record, through the files mtcd.pairing_record.card_files picks
    for `backend` (the service's choice too)."""
    from ..pairing_record import card_files, read_pairing_record

    uicc = None
    if channel is not None:
        from ..card.uicc import ApduUicc

        uicc = ApduUicc(channel)
    try:
        return read_pairing_record(card_files(backend, modem=modem, uicc=uicc)).as_json()
    finally:
        if uicc is not None:
            uicc.close()


def pairing_status(config, args) -> int:
    client = ControlClient(config.service.control_socket)
    via = "service" if client.available() else "direct"
    record = _through_service(client) if via == "service" else _directly(config)
    if args.json:
        print_json({"via": via, **record})
    else:
        print("\n".join(render(record, via, _DIRECT.get(config.uicc.backend, _DIRECT["at"]))))
    return EXIT_OK


def _reading(part: dict) -> str:
    text = part["state"]
    return text + (f" ({part['why']})" if part.get("why") else "")


_DIRECT = {"at": "from the modem (AT+CRSM)", "csim": "from the card, in APDUs over the modem's AT+CSIM",
           "pcsc": "from the card in the PC/SC reader"}


def render(record: dict, via: str, direct: str = _DIRECT["at"]) -> list[str]:
    ips = record["ips"]
    service = record["service"] + (f" ({record['service_why']})" if record.get("service_why") else "")
    ips_text = _reading(ips)
    if ips["state"] == "present" and ips.get("file_records") is not None:
        ips_text += f", {ips['file_records']} records, {ips.get('empty_records', 0)} never written"
    rows = [
        ("read", "through the service (newest records only)" if via == "service" else direct),
        ("USAT pairing service", service),
        ("EF-IPS", ips_text),
        ("EF-IPD", _reading(record["ipd"])),
        ("summary", record.get("summary") or ""),
    ]
    width = max(len(label) for label, _ in rows) + 1
    lines = [f"{label + ':':<{width}} {value}" for label, value in rows]
    if record["records"]:
        devices = {d["record"]: d for d in record.get("devices", [])}
        lines.append("pairings, newest first:")
        for r in record["records"]:
            status = {"ok": "OK", "ko": "KO"}.get(r["status"], f"unknown ({r['raw']})")
            line = f"  {r['record']:>3}  {status}"
            link = r.get("ipd_record")
            if link is not None:
                device = devices.get(link)
                if device and device.get("value"):
                    line += f"  {device['kind'].upper()} {device['value']} (EF-IPD record {link})"
                elif device:
                    line += f"  EF-IPD record {link}: {device['kind']} ({device['raw']})"
                else:
                    line += f"  EF-IPD record {link}: not read"
            lines.append(line)
    return lines



