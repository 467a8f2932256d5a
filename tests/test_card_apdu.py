"""The APDU path's pure parts and its last line of defence, without a
reader: FCP / PIN status template / EF.DIR parsing, the T=0 rules (61xx,
6Cxx) in `transmit`, the card-session checks of ApduUicc over a channel
that feeds the simulator's card, reader choice, and the [uicc] settings."""

from __future__ import annotations

import pytest

from mtcd import apdu
from mtcd.card import files
from mtcd.card.channel import CardReset, transmit
from mtcd.card.pcsc import ReaderUnavailable, choose_reader
from mtcd.card.channel import CardAbsent
from mtcd.card.uicc import ApduUicc, CardChangedMidway
from mtcd.errors import ModemProtocolError
from mtcd.policy import PinOutcome
from mtcd.secret import Pin
from mtcd.simlock import SimLock
from simfixtures import TEST_PIN, make_card

def tlv(tag: int, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return bytes([tag, len(body)]) + body


def test_pin_status_template_bits_follow_the_key_references():
    # As an ADF's FCP lists them: PIN1 (01) disabled, PIN2 (81) and ADM (0A) enabled.
    template = tlv(0xC6, tlv(0x90, b"\x60"), tlv(0x83, b"\x01"), tlv(0x83, b"\x81"), tlv(0x83, b"\x0a"))
    fcp = tlv(0x62, tlv(0x82, b"\x78\x21"), tlv(0x83, b"\x7f\xff"), template)
    assert files.key_enabled(fcp, 0x01) is False  # b8 clear
    assert files.key_enabled(fcp, 0x81) is True  # b7 set
    assert files.key_enabled(fcp, 0x0A) is True
    assert files.key_enabled(fcp, 0x02) is None  # not listed: the FCP does not say
    assert files.key_enabled(tlv(0x62, tlv(0x82, b"\x78\x21")), 0x01) is None  # no template at all


def test_simulator_fcp_says_pin1_enabled_or_not():
    assert files.key_enabled(make_card().fcp(0x7FFF), apdu.PIN1) is True
    assert files.key_enabled(make_card(pin_enabled=False).fcp(0x7FFF), apdu.PIN1) is False


def test_ef_dir_gives_the_usim_aid_and_skips_others():
    isim = tlv(0x61, tlv(0x4F, bytes.fromhex("A0000000871004FF49FF0589")), tlv(0x50, b"ISIM")).ljust(32, b"\xff")
    usim_aid = bytes.fromhex("A0000000871002FF49FF0589")
    usim = tlv(0x61, tlv(0x4F, usim_aid), tlv(0x50, b"USIM")).ljust(32, b"\xff")
    assert files.usim_aid([isim, usim]) == usim_aid
    assert files.usim_aid([isim, b"\xff" * 32]) is None
    assert files.usim_aid([b"\x61\x30\x4f"]) is None  # truncated: skipped, not a crash


def test_record_length_and_size_from_an_fcp():
    fcp = tlv(0x62, tlv(0x82, b"\x42\x21\x00\x20\x02"), tlv(0x83, b"\x2f\x00"), tlv(0x80, b"\x00\x40"))
    assert files.record_length(fcp) == 0x20 and files.file_size(fcp) == 0x40
    with pytest.raises(ModemProtocolError):
        files.fcp_objects(bytes.fromhex("6F0100"))


class CardChannelOver:
    """A channel to the simulator's card, recording what went to it."""

    def __init__(self, card):
        self.card, self.session, self.sent = card, 1, []
        self.before = None  # called before each command: a test's interference

    def send(self, tpdu, *, sensitive=False):
        if self.before is not None:
            self.before(tpdu)
        self.sent.append(tpdu)
        return self.card.apdu(tpdu)

    def card_changed(self):
        self.session += 1

    def close(self):
        pass


def test_transmit_fetches_61xx_and_resends_on_6cxx():
    channel = CardChannelOver(make_card())
    fcp = transmit(channel, apdu.select_file(apdu.MF))
    assert fcp.ok and fcp.data.startswith(b"\x62")
    assert [t[1] for t in channel.sent] == [0xA4, 0xC0]
    transmit(channel, apdu.select_file(apdu.EF_ICCID))
    channel.sent.clear()
    data = transmit(channel, apdu.read_binary(0, 256))  # Le 00 on T=0: the card says 6C0A
    assert data.ok and len(data.data) == 10
    assert [t[4] for t in channel.sent] == [0x00, 0x0A]


def test_a_card_that_never_stops_announcing_data_is_an_error():
    class Chatty:
        session = 1

        def send(self, tpdu, *, sensitive=False):
            return b"\x61\x10"

    with pytest.raises(ModemProtocolError):
        transmit(Chatty(), apdu.select_file(apdu.MF))


def _read(uicc):
    lock, iccid = uicc.lock(settle=False), uicc.iccid()
    uicc.attempts()
    return lock, iccid


def test_pin_goes_out_only_in_the_session_it_was_read_in():
    card = make_card()
    channel = CardChannelOver(card)
    uicc = ApduUicc(channel)
    lock, iccid = _read(uicc)
    assert lock is SimLock.SIM_PIN and uicc.may_present(iccid)
    channel.card_changed()  # a reset reported by PC/SC, a SIM-state URC over AT+CSIM
    assert not uicc.may_present(iccid)
    with pytest.raises(CardChangedMidway):
        uicc.present_pin(Pin(TEST_PIN), iccid)
    assert not any(len(t) > 5 and t[1] == 0x20 for t in channel.sent)


def test_a_card_swapped_unnoticed_gets_no_pin():
    card, other = make_card(), make_card(serial_number=2)
    channel = CardChannelOver(card)
    uicc = ApduUicc(channel)
    _, iccid = _read(uicc)
    channel.card = other  # no URC, no reset: only the ICCID read again shows it
    with pytest.raises(CardChangedMidway, match="another card"):
        uicc.present_pin(Pin(TEST_PIN), iccid)
    assert other.pin_attempts == 3 and card.pin_attempts == 3


def test_a_counter_that_moved_after_the_policy_saw_it_stops_the_pin():
    card = make_card()
    channel = CardChannelOver(card)
    uicc = ApduUicc(channel)
    _, iccid = _read(uicc)
    card.verify("00000000")  # someone else spent one: 3 -> 2 below what the policy was shown
    with pytest.raises(CardChangedMidway, match="counter moved"):
        uicc.present_pin(Pin(TEST_PIN), iccid)
    assert card.pin_attempts == 2


def test_pin_accepted_and_rejected_by_status_word():
    card = make_card()
    uicc = ApduUicc(CardChannelOver(card))
    _, iccid = _read(uicc)
    assert uicc.present_pin(Pin("11112222"), iccid) is PinOutcome.REJECTED
    _, iccid = _read(uicc)
    assert uicc.present_pin(Pin(TEST_PIN), iccid) is PinOutcome.ACCEPTED
    assert uicc.lock(settle=False) is SimLock.READY
    # Verified: VERIFY without data says 9000 and no count; none is made up.
    assert uicc.attempts().pin1 is None and uicc.attempts().puk1 == 10


def test_a_pin_disabled_card_is_ready_and_never_asked():
    uicc = ApduUicc(CardChannelOver(make_card(pin_enabled=False)))
    assert uicc.lock(settle=False) is SimLock.READY and uicc.pin_enabled() is False


def test_blocked_card_reports_sim_puk_and_puk_counter():
    uicc = ApduUicc(CardChannelOver(make_card(pin_attempts=0, puk_attempts=7)))
    assert uicc.lock(settle=False) is SimLock.SIM_PUK
    assert uicc.puk_attempts() == 7


def test_no_card_is_not_inserted():
    class Empty:
        session = 1

        def send(self, tpdu, *, sensitive=False):
            raise CardAbsent("no card")

    uicc = ApduUicc(Empty())
    assert uicc.lock(settle=False) is SimLock.NOT_INSERTED and uicc.iccid() is None


def test_a_reset_while_reading_is_read_again():
    card = make_card()
    channel = CardChannelOver(card)
    resets = [True]

    def once(tpdu):
        if resets and tpdu[1] == 0xB0:
            resets.clear()
            channel.session += 1
            raise CardReset("reset")
    channel.before = once
    uicc = ApduUicc(channel)
    lock = uicc.lock(settle=False)
    iccid = uicc.iccid()
    assert iccid == card.iccid
    assert not uicc.may_present(iccid)  # the lock was read in the session before


@pytest.mark.parametrize("wanted, holding, chosen", [
    ("", {"B 00 01"}, "B 00 01"),
    ("1", set(), "B 00 01"),
    ("00 00", set(), "B 00 00"),
])
def test_pcsc_reader_choice(wanted, holding, chosen):
    assert choose_reader(["B 00 00", "B 00 01"], wanted, frozenset(holding)) == chosen


@pytest.mark.parametrize("wanted, why", [("7", "only 2"), ("B", "matches 2"), ("X", "matches no")])
def test_pcsc_reader_choice_errors(wanted, why):
    with pytest.raises(ReaderUnavailable, match=why):
        choose_reader(["B 00 00", "B 00 01"], wanted)


def test_pcsc_no_card_in_any_reader_is_no_sim():
    with pytest.raises(CardAbsent):
        choose_reader(["B 00 00", "B 00 01"], "", frozenset())


@pytest.mark.parametrize("section, complaint", [
    ('backend = "nfc"', 'uicc.backend must be one of "at", "csim", "pcsc" (got "nfc")'),
    ('backend = "csim"\nreader = "x"', 'uicc.reader is only used with backend = "pcsc"'),
    ('backend = "pcsc"\nreader = ""', "uicc.reader must be a reader name"),
    ('card = "x"', "uicc.card"),
])
def test_uicc_settings_are_checked(gateway, section, complaint):
    gateway.configure("/dev/null")
    with open(gateway.config, "a") as f:
        f.write(f"[uicc]\n{section}\n")
    run = gateway.mtcd("once", "--json")
    assert run.returncode == 78
    assert complaint in run.stderr and len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr


def test_pcsc_without_pcscd_is_one_line_exit_69(gateway, tmp_path, monkeypatch):
    from simfixtures import sim_modem

    monkeypatch.setenv("PCSCLITE_CSOCK_NAME", str(tmp_path / "nowhere.comm"))
    with sim_modem(make_card()) as (modem, port):
        gateway.configure(port)
        with open(gateway.config, "a") as f:
            f.write('[uicc]\nbackend = "pcsc"\n')
        run = gateway.mtcd("once", "--json")
    assert run.returncode == 69 and "pcscd" in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert modem.radio != 1


def test_virtual_usim_serves_extra_files_only_when_asked():
    """EF-IPS (cyclic records) and EF-IPD (transparent) in the virtual USIM,
    for the readers of the card's pairing record; absent by default."""
    from mtcd.sim.vusim import VirtualUsim

    ips, ipd = ["4F4B01", "4B4F02"], "3599990000000180"
    usim = VirtualUsim(make_card(), {"6FF1": ips, "6FF2": ipd})

    class Channel:
        session = 1

        def send(self, tpdu, *, sensitive=False):
            return usim.answer(tpdu)

    channel = Channel()
    fcp = transmit(channel, apdu.select_file(0x6FF1))
    assert fcp.ok and files.record_length(fcp.data) == 3 and files.file_size(fcp.data) == 6
    record = transmit(channel, files.read_record(2, 3))
    assert record.ok and record.data == bytes.fromhex("4B4F02")
    assert transmit(channel, apdu.select_file(0x6FF2)).ok
    assert transmit(channel, apdu.read_binary(0, 8)).data == bytes.fromhex(ipd)
    plain = VirtualUsim(make_card())
    assert plain.answer(apdu.select_file(0x6FF1).tpdu()) == b"\x6a\x82"
    # EF.DIR names the USIM, and only that AID (or a prefix of it) selects it.
    assert plain.answer(files.select_aid(bytes.fromhex("A0000000871004")).tpdu()) == b"\x6a\x82"


def test_virtual_usim_acks_every_read_of_vpcd_at_once():
    """vpcd sends a command's length and body as two segments; unless the
    card acknowledges the first at once, the body waits out the kernel's
    delayed ACK behind Nagle's algorithm (~40 ms an APDU, seconds a test).
    Quick-ACK mode lapses by itself, so it is asked for before every read."""
    import socket

    from mtcd.sim.vusim import _recv_exact

    class Recorded:
        def __init__(self, conn):
            self.conn, self.calls = conn, []

        def setsockopt(self, *option):
            self.calls.append(option)
            self.conn.setsockopt(*option)

        def recv(self, n):
            self.calls.append("recv")
            return self.conn.recv(n)

    with socket.create_server(("127.0.0.1", 0)) as server, \
            socket.create_connection(server.getsockname()) as vpcd:
        conn, _ = server.accept()
        with conn:
            card = Recorded(conn)
            vpcd.sendall(b"\x00\x03")
            assert _recv_exact(card, 2) == b"\x00\x03"
            vpcd.sendall(b"abc")
            assert _recv_exact(card, 3) == b"abc"
    quick_ack = (socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
    reads = [i for i, call in enumerate(card.calls) if call == "recv"]
    assert len(reads) >= 2
    assert all(i > 0 and card.calls[i - 1] == quick_ack for i in reads), card.calls


def test_the_private_pcscd_socket_path_fits_whatever_the_root(tmp_path):
    """A Unix socket's path holds at most 107 bytes; `make demo` under a
    test worker's directory once put pcscd's socket at 114 and the card
    never showed up."""
    from mtcd.sim.pcscstack import PcscStack
    from simfixtures import make_card

    deep = tmp_path / ("d" * 60) / ("e" * 60)
    stack = PcscStack(deep, make_card())
    try:
        assert len(str(stack.socket).encode()) <= 107
    finally:
        stack.__exit__(None, None, None)
    assert not stack.run_dir.exists()
