"""The test SIM in a PC/SC reader (`--reader`): mtcd's own PC/SC backend
(mtcd.card: PcscChannel under ApduUicc) reads it, with the same guards as
the AT path.  The connection is shared and left as it is on close: pcscd
never resets the card between two tests.

Nothing here is logged at the APDU level: a PIN command's data never
leaves mtcd.card."""

from __future__ import annotations

import contextlib

from mtcd.card.record import read_over_apdu


@contextlib.contextmanager
def open_reader(reader: str, settle_time: float = 5.0):
    """An ApduUicc on the reader `reader` names (a name substring or an index)."""
    from mtcd.card.pcsc import PcscChannel
    from mtcd.card.uicc import ApduUicc

    uicc = ApduUicc(PcscChannel(reader), settle_time=settle_time)
    try:
        yield uicc
    finally:
        uicc.close()


def read_card(uicc) -> tuple[str, str | None, int | None, int | None, bool | None]:
    """(lock, ICCID, PIN left, PUK left, PIN enabled), read only: SELECT,
    READ BINARY and VERIFY / UNBLOCK PIN without data, which spend nothing."""
    lock = uicc.lock()
    iccid = uicc.iccid()
    counters = uicc.attempts()
    pin_left = counters.pin1 if counters is not None else None
    puk_left = counters.puk1 if counters is not None else uicc.puk_attempts()
    return lock.value, str(iccid) if iccid else None, pin_left, puk_left, uicc.pin_enabled()


def read_record_over_pcsc(uicc, limit: int = 16):
    """The card's pairing record (EF-UST, EF-IPS, EF-IPD), read only: mtcd's
    own reader (mtcd.card.record), as `mtcctl sim pairing-status` uses it."""
    return read_over_apdu(uicc, limit)


class PcscRestorer:
    """For a destructive PC/SC test: `pin` is the PIN the card holds now
    (the test updates it when it changes it); afterwards the card gets its
    starting PIN back and its PIN enabled as it was.  What did not work is
    noted for the session's final check, which then reports it instead of
    spending an attempt to prove a PIN the card is known not to hold."""

    def __init__(self, bench, pin):
        self.bench, self.pin = bench, pin
        self.notes: list[str] = []

    def restore(self, test: str) -> None:
        from mtcd.policy import PinOutcome
        from mtcd.simlock import SimLock

        card, start = self.bench.card, self.bench.pcsc_start
        try:
            with open_reader(self.bench.reader) as uicc:
                lock = uicc.lock()
                iccid = uicc.iccid()
                if str(iccid) != start.iccid:
                    self.notes.append(f"{test}: cannot restore: the reader holds {iccid or 'no readable card'}")
                    return
                if lock is SimLock.SIM_PIN:
                    outcome = uicc.present_pin(self.pin, iccid)
                    if outcome is not PinOutcome.ACCEPTED:
                        self.notes.append(f"{test}: the card refused the PIN the test left on it ({outcome.value})")
                        return
                    lock = uicc.lock()
                if lock is not SimLock.READY:
                    self.notes.append(f"{test}: cannot restore: SIM state {lock.value}")
                    return
                if uicc.pin_enabled() is False and start.pin_enabled:
                    uicc.enable_pin(self.pin, iccid)
                    uicc.lock()
                if self.pin != card.pin:
                    outcome = uicc.change_pin(self.pin, card.pin, iccid)
                    if outcome is not PinOutcome.ACCEPTED:
                        self.notes.append(f"{test}: the card did not take back its starting PIN ({outcome.value}): "
                                          "it still holds the PIN the test set")
                        return
                    self.pin = card.pin
        except Exception as exc:  # noqa: BLE001 - reported by the final check, never swallowed
            self.notes.append(f"{test}: the restore failed: {exc}")
