"""`mtcctl doctor [--json]`: what the gateway sees, read-only, and what to run
next for each problem found.

With the service running, the modem facts come from it (it holds the port's
exclusive lock) through the control socket's read-only "doctor" command;
without it, the modem is opened here, asked read-only queries (see
mtcd.doctor_probe) and closed: nothing is paired or presented, the radio is
left as it was.  Exit 0: no problem; 1: problems found (each printed with
what to run next); 69: the modem cannot be reached at all (the local facts
are still printed).
"""

from __future__ import annotations

from ..control import ControlClient
from ..doctor import exit_code, findings, render, report
from ..doctor_probe import keystore_facts, last_decision, port_facts, probe_modem, unreachable_modem
from ..errors import ModemUnavailable, MtcdError
from .common import print_json


def _config_facts(config, path) -> dict:
    return {
        "path": str(path),
        "port": config.modem.port,
        "vendor": config.modem.vendor,
        "driver": config.modem.driver,
        "state_dir": str(config.state_dir),
        "min_retries": config.policy.min_retries,
        "require_pin_enabled": config.policy.require_pin_enabled,
        "on_imei_change": config.policy.on_imei_change,
    }


def _through_service(client: ControlClient) -> tuple[dict, dict]:
    """(service facts, modem facts) from the running service."""
    service = {"running": True, "pid": None, "state": None, "status": None, "error": None, "error_exit": None}
    try:
        answer = client.call("doctor")
    except MtcdError as exc:
        service["error"], service["error_exit"] = str(exc), exc.exit_code
        return service, unreachable_modem(f"the service holds the modem and did not answer: {exc}", "service")
    status = answer.get("status") or {}
    service.update(pid=answer.get("pid"), state=status.get("state"), status=status.get("status"))
    modem = answer.get("modem")
    if not isinstance(modem, dict):
        modem = unreachable_modem(answer.get("modem_error") or "the service has no modem session", "service")
    return service, modem


def _directly(config) -> dict:
    """Open the modem (the port's exclusive lock keeps this single), ask,
    close.  No pairing, no radio change, no keystore access here."""
    from ..modem import Modem
    from ..transport import SerialTransport

    m = config.modem
    transport = SerialTransport(m.port, m.baudrate, rtscts=m.rtscts, timeout=m.timeout)
    try:
        with transport:
            modem = Modem(transport)
            modem.initialise()
            from ..card import doctor_uicc

            uicc = doctor_uicc(config, modem)
            try:
                return probe_modem(modem, m.vendor, via="direct", uicc=uicc)
            finally:
                if uicc is not None:
                    uicc.close()
    except ModemUnavailable as exc:
        return unreachable_modem(str(exc), "direct")


def doctor(config, args, available=()) -> int:
    client = ControlClient(config.service.control_socket)
    modemmanager = None
    if config.modem.driver == "modemmanager":
        # ModemManager owns the port: its properties over D-Bus, never the port itself.
        from ..doctor_mm import probe

        modemmanager, direct = probe(config.modem.port)
    if client.available():
        service, modem = _through_service(client)
    else:
        service = {"running": False, "pid": None, "state": None, "status": None, "error": None, "error_exit": None}
        modem = direct if modemmanager is not None else _directly(config)
    facts = {
        "config": _config_facts(config, args.config),
        "port": port_facts(config.modem.port),
        "service": service,
        "modem": modem,
        "keystore": keystore_facts(config.state_dir, config.keystore.sealer, modem.get("iccid")),
        "last_decision": last_decision(config.state_dir),
    }
    if modemmanager is not None:
        facts["modemmanager"] = modemmanager  # only with that driver: the serial report is unchanged
    found = findings(facts, available)
    if args.json:
        body = report(facts, found)
        code = body["exit"]
        if code == 69:
            error, message = "modem-unavailable", modem.get("error") or "the modem cannot be reached"
        else:
            error = "problems-found" if code else None
            message = f"{len(found)} problem{'s' if len(found) != 1 else ''} found: " + "; ".join(f.problem for f in found)
        print_json(body, code, error=error, message=" ".join(message.split()) if code else None)
    else:
        print("\n".join(render(facts, found)))
    return exit_code(facts, found)

