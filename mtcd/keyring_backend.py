"""A `keyring` backend over the sealed PIN store: service "mtcd", username = ICCID.

    python -m keyring get mtcd 8944500102198304826      # as root: prints the PIN
    python -m keyring set mtcd 8944500102198304826      # reads the PIN, stores it
    python -m keyring del mtcd 8944500102198304826

This is root tooling. `get_password` is the one sanctioned API that hands a
stored PIN out of mtcd (guarantee 4 otherwise keeps it inside the keystore
and the command that carries it to the card); every such read is written to
the pairing journal as "pin-revealed". A PIN the card rejected is not handed
out: guarantee 1 says it is never presented again automatically, and a tool
reading it through keyring would be exactly such an automatism.

The state directory comes from the mtcd configuration ($MTCD_CONFIG, else
/etc/mtcd/mtcd.toml). keyring discovers this backend through the
`keyring.backends` entry point, but never chooses it by itself: its priority
is below keyring's "fail" backend, so neither the default keyring nor the
chainer ever hands it another program's secrets. It is used only when named:

    python -m keyring -b mtcd.keyring_backend.MtcdKeyring get mtcd ICCID
    PYTHON_KEYRING_BACKEND=mtcd.keyring_backend.MtcdKeyring python -m keyring ...

and then only for root with a configuration file present. It holds service
"mtcd" alone. The service skips discovery with `use_directly()`. Works with
keyring 23.9 (Debian bookworm) and later: no keyring-internal helpers.

Errors never contain the password: a bad PIN is named by its rule only.
"""

from __future__ import annotations

import os
from pathlib import Path

from keyring import backend, errors

from .config import DEFAULT_CONFIG_PATH, load_config
from .errors import MtcdError
from .identity import Iccid
from .journal import PIN_FORGOTTEN, PIN_SET, PairingJournal
from .keystore import Keystore
from .sealers import choose_sealer
from .secret import Pin

SERVICE = "mtcd"
CONFIG_ENV = "MTCD_CONFIG"
PIN_REVEALED = "pin-revealed"  # journal event: a PIN left mtcd through get_password
_VIA = "keyring"

# Below keyring's "fail" backend (0) and the chainer's floor (> 0): never
# chosen by discovery, only by name.
_PRIORITY = -1


class _classproperty:
    """A read-only property of the class, as keyring reads `priority`
    (keyring's own helper moved between versions)."""

    def __init__(self, fget):
        self.fget = fget

    def __get__(self, instance, owner):
        return self.fget(owner)


class NotOurService(errors.PasswordSetError, errors.PasswordDeleteError, NotImplementedError):
    """A service other than "mtcd": refused, and NotImplementedError so that
    keyring's chainer moves on to root's other keyrings."""

    def __init__(self, service: str):
        super().__init__(f"the mtcd keyring only holds service {SERVICE!r}")


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


class MtcdKeyring(backend.KeyringBackend):
    """PIN1 per ICCID in mtcd's keystore (see the module docstring)."""

    def __init__(self, config: Path | None = None, sealer: str = "auto"):
        super().__init__()
        self._config = Path(config) if config is not None else None
        # Until the configuration names a sealer, "auto" keeps whichever
        # sealer the store already uses.
        self._sealer = sealer

    @_classproperty
    def priority(cls) -> float:
        if os.geteuid() != 0:
            raise RuntimeError("the mtcd keyring is for root only")
        if not config_path().is_file():
            raise RuntimeError(f"no mtcd configuration at {config_path()}")
        return _PRIORITY

    def get_password(self, service: str, username: str) -> str | None:
        if service != SERVICE:
            return None
        try:
            iccid = Iccid(username)
        except (TypeError, ValueError):
            return None  # nothing can be stored under a name that is not an ICCID
        try:
            state_dir = self._state_dir()
            entry = Keystore.open(state_dir, self._sealer_for(state_dir)).get(iccid)
            if entry is None or entry.rejected:
                return None
            PairingJournal(state_dir).append(PIN_REVEALED, iccid=str(iccid), via=_VIA)
        except MtcdError as exc:
            raise errors.KeyringError(f"mtcd keystore: {exc}") from None
        return entry.pin.reveal()

    def set_password(self, service: str, username: str, password: str) -> None:
        if service != SERVICE:
            raise NotOurService(service)
        try:
            iccid = Iccid(username)
        except (TypeError, ValueError) as exc:
            raise errors.PasswordSetError(f"username is not an ICCID: {exc}") from None
        try:
            pin = Pin(password)
        except (TypeError, ValueError) as exc:  # the message names the rule, not the value
            raise errors.PasswordSetError(f"password is not a PIN: {exc}") from None
        try:
            state_dir = self._state_dir()
            keystore = Keystore.open(state_dir, self._sealer_for(state_dir))
            replaced = keystore.get(iccid) is not None
            keystore.set_pin(iccid, pin)
            PairingJournal(state_dir).append(PIN_SET, iccid=str(iccid), replaced=replaced,
                                             via=_VIA)
        except MtcdError as exc:
            raise errors.PasswordSetError(f"mtcd keystore: {exc}") from None

    def delete_password(self, service: str, username: str) -> None:
        if service != SERVICE:
            raise NotOurService(service)
        try:
            iccid = Iccid(username)
        except (TypeError, ValueError) as exc:
            raise errors.PasswordDeleteError(f"username is not an ICCID: {exc}") from None
        try:
            state_dir = self._state_dir()
            if not Keystore.open(state_dir, self._sealer_for(state_dir)).forget(iccid):
                raise errors.PasswordDeleteError(f"no PIN is stored for ICCID {iccid}")
            PairingJournal(state_dir).append(PIN_FORGOTTEN, iccid=str(iccid), via=_VIA)
        except MtcdError as exc:
            raise errors.PasswordDeleteError(f"mtcd keystore: {exc}") from None

    def _state_dir(self) -> Path:
        # Read at each call: the backend may live longer than one configuration.
        return load_config(self._config or config_path()).state_dir

    def _sealer_for(self, state_dir: Path):
        return choose_sealer(self._sealer, state_dir)


def use_directly(config: Path | None = None, sealer: str = "auto") -> MtcdKeyring:
    """Make this backend keyring's for the process, skipping discovery."""
    import keyring

    ring = MtcdKeyring(config, sealer)
    keyring.set_keyring(ring)
    return ring
