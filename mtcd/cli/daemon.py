"""`mtcd`: the pairing gate.

    mtcd [--config PATH] once [--json]   one pairing decision, link up if paired
    mtcd [--config PATH] once --dry-run [--json]
                                         what that decision would be; nothing
                                         presented, nothing changed
    mtcd [--config PATH] run             the service: pair, hold the link, watch the
                                         SIM and the modem, close the gate on SIGTERM

Exit codes: 0 paired, 1 refused, 64 usage, 65 damaged keystore/journal,
69 modem unavailable or data link failed, 74 state directory or stdout not
writable, 77 not permitted, 78 configuration error, 141 stdout's reader gone.
"""

from __future__ import annotations

import sys

from ..errors import EXIT_OK, EXIT_REFUSED
from .common import ArgumentParser, add_version_option, add_config_option, config_from, print_json, run_main, setup_logging

PROG = "mtcd"


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description="UICC-device pairing gate (3GPP TR 33.868 PIN verification pairing)")
    add_version_option(parser)
    add_config_option(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    once = sub.add_parser("once", help="take one pairing decision, bring the link up if paired, and exit")
    once.add_argument("--json", action="store_true",
                      help="print the outcome as one JSON object (docs/json/mtcd-once.schema.json), errors included")
    once.add_argument("--dry-run", action="store_true",
                      help="read everything and say what pairing would do; present nothing, change nothing")
    sub.add_parser("run", help="run as a service: pair, then hold the link until stopped",
                   description="Run as a service: pair, then hold the link until stopped (systemd Type=notify).")
    return parser


def _report_line(report) -> str:
    """One line for a person; a value not read is left out, never "None"."""
    if report.state == "paired":
        known = [f"{name} {value}" for name, value in (("ICCID", report.iccid), ("IMEI", report.imei)) if value]
        return f"paired: {', '.join([*known, f'link {report.link}'])}"
    line = f"refused: {report.reason or 'unknown reason'}"
    if report.detail:
        line += f": {report.detail}"
    if report.iccid and report.iccid not in line:
        line += f" (ICCID {report.iccid})"
    return line


def _print_report(report, as_json: bool) -> None:
    if as_json:
        code = EXIT_OK if report.state == "paired" else EXIT_REFUSED
        print_json(report.as_json(), code, error="refused", message=_report_line(report))
    else:
        print(_report_line(report))


def _body(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    setup_logging(PROG, args.verbose)
    config = config_from(args)
    if args.command == "once" and args.dry_run:
        return _dry_run(config, args.json)
    if args.command == "once":
        # Imported here: --help, usage and configuration errors need none of it.
        from ..datalink import DatalinkFailed
        from ..progress import Waits
        from ..service import Gateway

        # On a terminal, a progress line while the SIM, the modem or the link is slow.
        with Gateway(config, waits=Waits(sys.stderr)) as gateway:
            try:
                report = gateway.pair_once()
            except DatalinkFailed:
                gateway.close_gate()
                raise
        _print_report(report, args.json)
        return EXIT_OK if report.state == "paired" else EXIT_REFUSED
    return _run(config, args.config)


def _dry_run(config, as_json: bool) -> int:
    """Exit 0 when pairing would go ahead (pair, or present a stored PIN),
    1 when it would refuse or first latch an attempt lost in a power cut."""
    from ..lifecycle import change_waits, now_utc, rotation_due
    from ..recovery import dry_run
    from ..service import Gateway, policy_settings

    with Gateway(config) as gateway:
        gateway.start(prepare_link=False)

        def rotation(iccid):
            entry = gateway.keystore.get(iccid)
            if entry is None or change_waits(entry) is not None:
                return None  # no change would begin in this run
            return rotation_due(entry, config.policy, now_utc())

        answer = dry_run(gateway.uicc, gateway.keystore, policy_settings(config), gateway.imei, gateway.imeisv,
                         rotation, gateway.datalink.name)
    code = EXIT_OK if answer["state"] in ("would-pair", "would-present") else EXIT_REFUSED
    if as_json:
        shown = {k: v for k, v in answer.items() if not (v is None and code and k in ("reason", "pin"))}
        print_json(shown, code, error="refused", message=answer["detail"])
    else:
        print(answer["detail"])
    return code


def _run(config, config_path) -> int:
    from ..gatekeeper import Gatekeeper

    return Gatekeeper(config_path, config).run()


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, _body, argv)


if __name__ == "__main__":
    sys.exit(main())
