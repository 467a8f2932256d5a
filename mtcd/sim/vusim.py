"""A virtual USIM for the PC/SC tests and the demo: the simulator's card (mtcd.sim.card,
with its PIN1/PUK1 counters, enable/disable, EF.ICCID, EF.IMSI, ADF.USIM
and FCPs with the PIN status template) behind vpcd, the virtual reader
driver of pcscd (Debian vsmartcard-vpcd), plus what a real USIM has and
the simulator's card does not need: EF.DIR with the USIM's AID, SELECT by
that AID only, READ RECORD, and extra files on request (EF-IPS and EF-IPD,
or any other).

vpcd's socket protocol (vpcd listens, the card connects to it):
every message is a 2-byte big-endian length and its bytes; a 1-byte
message is a control (0 power off, 1 power on, 2 reset, 4 send the ATR),
anything longer is a command APDU, answered with the response APDU.

    python -m mtcd.sim.vusim --card card.json --port PORT [--log log.jsonl]
        [--files files.json] [--pull-after-iccid-reads N [--pull-for S]]

`--files` is a JSON object: FID (hex) to a transparent EF's content (hex)
or a record EF's records (list of hex), and "pairing" to give the card
its own pairing record with its access conditions: {"service": bool,
"ips": [records] or null, "ipd": [records] or null, "unreadable": [FIDs]}.

`--card` is the card's state file (mtcd.sim.card format); every change of
its counters, PIN or enabled flag is saved there, so a test reads the
card's memory from it.  `--log` gets one JSON line per command: the
header, Lc and the status word, never the data of a PIN command.
`--pull-after-iccid-reads N`: after the N-th READ BINARY of EF.ICCID is
answered, the card is pulled (the connection closed) for S seconds, then
inserted again; with `--swap-to other.json` another card comes back.
SIGUSR1 pulls and reinserts the card at once (a power cycle of the card).
`--stall-ins 24 --stall-for S`: the first CHANGE PIN is carried out, logged,
and its answer held back S seconds (time to cut the gateway's power).
`--refuse-ins 24 --refuse-after N`: the first N commands with that INS are
carried out, every later one is answered 6F00 (technical problem) and not
carried out: a card that will not take its PIN back (the hw suite's
failed-restore test).
`--swallow-ins 24`: the first command with that INS is answered 9000 and
not carried out (a change said done that the card never made).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
from pathlib import Path

from .card import SECRET_INS, SimCard, sw_bytes

ATR = bytes.fromhex("3B00")
USIM_AID = bytes.fromhex("A0000000871002FF49FF0589")  # RID, USIM code, then the operator's
EF_DIR = 0x2F00
EF_ICCID = 0x2FE2
EF_IPS = 0x6FF1
INS_SELECT, INS_READ_RECORD, INS_READ_BINARY = 0xA4, 0xB2, 0xB0
DIR_RECORD = 32


def dir_record(aid: bytes, label: bytes = b"USIM") -> bytes:
    body = bytes([0x4F, len(aid)]) + aid + bytes([0x50, len(label)]) + label
    return (bytes([0x61, len(body)]) + body).ljust(DIR_RECORD, b"\xff")


class VirtualUsim:
    """SimCard plus EF.DIR, AID selection, READ RECORD and extra files."""

    def __init__(self, card: SimCard, extra: dict | None = None):
        self.card = card
        self.records: dict[int, list[bytes]] = {EF_DIR: [dir_record(USIM_AID), b"\xff" * DIR_RECORD]}
        self.binaries: dict[int, bytes] = {}
        extra = dict(extra or {})
        pairing = extra.pop("pairing", None)
        if pairing is not None:
            # The card's own EF-UST (READ PIN), EF-IPS and EF-IPD, with their
            # access conditions (mtcd.sim.card): service n°102 or not, a file
            # absent (null), reads refused (6982) for the FIDs in "unreadable".
            card.pairing_record(
                service=bool(pairing.get("service", True)),
                ips=None if pairing.get("ips") is None else [bytes.fromhex(r) for r in pairing["ips"]],
                ipd=None if pairing.get("ipd") is None else [bytes.fromhex(r) for r in pairing["ipd"]],
                unreadable={int(f, 16) for f in pairing.get("unreadable", ["6FF2"])})
        for fid, spec in extra.items():
            fid = int(fid, 16)
            if isinstance(spec, list):
                self.records[fid] = [bytes.fromhex(r) for r in spec]
            else:
                self.binaries[fid] = bytes.fromhex(spec)
        self.selected: int | None = None  # one of ours, else the card's own selection
        self.iccid_reads = 0

    def _fcp(self, fid: int) -> bytes:
        if fid in self.records:
            recs = self.records[fid]
            kind = 0x46 if fid == EF_IPS else 0x42  # cyclic (EF-IPS) or linear fixed
            desc = bytes([0x82, 0x05, kind, 0x21]) + len(recs[0]).to_bytes(2, "big") + bytes([len(recs)])
            size = len(recs[0]) * len(recs)
        else:
            desc, size = bytes([0x82, 0x02, 0x41, 0x21]), len(self.binaries[fid])
        body = desc + bytes([0x83, 0x02]) + fid.to_bytes(2, "big") + bytes([0x80, 0x02]) + size.to_bytes(2, "big")
        return bytes([0x62, len(body)]) + body

    def answer(self, raw: bytes) -> bytes:
        if len(raw) >= 4 and raw[0] == 0x00:
            ins, p1, p2 = raw[1], raw[2], raw[3]
            if ins == INS_SELECT and p1 == 0x04 and len(raw) > 5:
                aid = raw[5:5 + raw[4]]
                if not USIM_AID.startswith(aid):
                    return sw_bytes(0x6A82)
            if ins == INS_SELECT and p1 == 0x00 and len(raw) >= 7:
                fid = int.from_bytes(raw[5:7], "big")
                if fid in self.records or fid in self.binaries:
                    self.selected = fid
                    fcp = self._fcp(fid)
                    self.card._response = fcp
                    return sw_bytes(0x6100 | len(fcp))
                self.selected = None
            if ins == INS_SELECT:
                self.selected = None
            if ins == INS_READ_RECORD and self.selected in self.records:
                recs = self.records[self.selected]
                if p2 != 0x04 or not 1 <= p1 <= len(recs):
                    return sw_bytes(0x6A83)
                le = raw[4] if len(raw) == 5 else 0
                if le != len(recs[p1 - 1]):
                    return sw_bytes(0x6C00 | len(recs[p1 - 1]))
                return recs[p1 - 1] + sw_bytes(0x9000)
            if ins == INS_READ_BINARY and self.selected in self.binaries:
                content = self.binaries[self.selected]
                offset = (p1 << 8) | p2
                le = raw[4] if len(raw) == 5 else 0
                if offset >= len(content):
                    return sw_bytes(0x6B00)
                if le == 0 or le > len(content) - offset:
                    return sw_bytes(0x6C00 | (len(content) - offset))
                return content[offset:offset + le] + sw_bytes(0x9000)
            if ins == INS_READ_RECORD and self.selected is not None:
                return sw_bytes(0x6981)  # one of ours, not a record file
        out = self.card.apdu(raw)
        if len(raw) >= 2 and raw[1] == INS_READ_BINARY and self.card.selected == EF_ICCID and out[-2:] == b"\x90\x00":
            self.iccid_reads += 1
        return out


def _recv_exact(conn: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        _ack_at_once(conn)
        chunk = conn.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _ack_at_once(conn: socket.socket) -> None:
    """vpcd writes a command's length and its body in two segments: with
    the kernel's delayed ACK the body waited ~40 ms behind Nagle's
    algorithm on vpcd's side, each APDU.  A quick ACK lets it through at
    once.  The kernel leaves quick-ACK mode on its own, so it is asked for
    again before every read."""
    if hasattr(socket, "TCP_QUICKACK"):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


class Server:
    def __init__(self, args):
        self.args = args
        self.log = open(args.log, "a", buffering=1) if args.log else None
        self.pull_now = threading.Event()
        self.card_path = Path(args.card)
        self.usim = self._insert(self.card_path)

    def _insert(self, path: Path) -> VirtualUsim:
        card = SimCard.load(path)
        card.on_change = lambda c: c.save(path)
        extra = json.loads(Path(self.args.files).read_text()) if self.args.files else None
        return VirtualUsim(card, extra)

    def note(self, **fields) -> None:
        if self.log is not None:
            self.log.write(json.dumps({"t": round(time.time(), 3), **fields}) + "\n")

    def serve(self) -> None:
        """Insert the card: connect to vpcd (it listens), serve, and after a
        pull connect again.  vpcd going away ends the card's life too."""
        while True:
            conn = self._connect()
            if conn is None:
                return
            self.note(event="inserted", iccid=self.usim.card.iccid.value)
            pulled = self.session(conn)
            conn.close()
            if not pulled:
                self.note(event="reader-gone")
                return
            self.note(event="pulled")
            time.sleep(self.args.pull_for)
            if self.args.swap_to:
                self.card_path = Path(self.args.swap_to)
            self.usim = self._insert(self.card_path)

    def _connect(self) -> socket.socket | None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                return socket.create_connection(("127.0.0.1", self.args.port), timeout=2)
            except OSError:
                time.sleep(0.1)
        return None

    def _refused(self, ins: int | None) -> bytes | None:
        """6F00 instead of carrying out a command --refuse-ins names, after the first --refuse-after."""
        if ins is None or self.args.refuse_ins is None or f"{ins:02X}" != self.args.refuse_ins.upper():
            return None
        if self.args.refuse_after > 0:
            self.args.refuse_after -= 1
            return None
        return sw_bytes(0x6F00)

    def session(self, conn: socket.socket) -> bool:
        """Serve one insertion; True when the card is pulled (not vpcd going away)."""
        conn.settimeout(0.2)
        while True:
            if self.pull_now.is_set():
                self.pull_now.clear()
                return True
            try:
                head = _recv_exact(conn, 2)
            except TimeoutError:
                continue
            if head is None:
                return False
            conn.settimeout(None)
            (length,) = struct.unpack(">H", head)
            body = _recv_exact(conn, length)
            conn.settimeout(0.2)
            if body is None:
                return False
            if length == 1:
                control = body[0]
                if control in (0, 1, 2):
                    self.usim.card.power_cycle()
                    self.usim.selected = None
                    self.note(event={0: "power-off", 1: "power-on", 2: "reset"}[control])
                elif control == 4:
                    conn.sendall(struct.pack(">H", len(ATR)) + ATR)
                continue
            ins = body[1] if len(body) > 1 else None
            answer = self._refused(ins)
            if ins is not None and f"{ins:02X}" == (self.args.swallow_ins or "").upper():
                self.args.swallow_ins = None  # once
                answer = sw_bytes(0x9000)
            if answer is None:
                answer = self.usim.answer(body)
            entry = {"ins": f"{ins:02X}" if ins is not None else None, "p1p2": body[2:4].hex().upper(),
                     "lc": body[4] if len(body) > 5 else 0, "sw": answer[-2:].hex().upper()}
            if ins not in SECRET_INS:
                entry["data"] = body[5:].hex().upper()
            self.note(**entry)
            if ins is not None and f"{ins:02X}" == self.args.stall_ins:
                self.args.stall_ins = None  # once: the answer is late, as if the line were cut
                time.sleep(self.args.stall_for)
            conn.sendall(struct.pack(">H", len(answer)) + answer)
            limit = self.args.pull_after_iccid_reads
            if limit and self.usim.iccid_reads >= limit:
                self.args.pull_after_iccid_reads = 0  # once
                return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="a virtual USIM for vpcd (tests only)")
    parser.add_argument("--card", required=True)
    parser.add_argument("--port", type=int, required=True, help="vpcd's port on 127.0.0.1")
    parser.add_argument("--log")
    parser.add_argument("--files")
    parser.add_argument("--pull-after-iccid-reads", type=int, default=0)
    parser.add_argument("--pull-for", type=float, default=1.0)
    parser.add_argument("--swap-to")
    parser.add_argument("--stall-ins", help="hold the answer to the first command with this INS (hex)")
    parser.add_argument("--stall-for", type=float, default=3.0)
    parser.add_argument("--refuse-ins", help="answer commands with this INS (hex) 6F00, not carrying them out")
    parser.add_argument("--swallow-ins", help="answer the first command with this INS (hex) 9000, not carrying it out")
    parser.add_argument("--refuse-after", type=int, default=0, help="carry out this many of them first")
    args = parser.parse_args(argv)
    server = Server(args)
    signal.signal(signal.SIGUSR1, lambda *_: server.pull_now.set())
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
