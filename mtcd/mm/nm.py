"""NetworkManager's GSM profiles that would send a PIN behind the gate.

NetworkManager sends the PIN a connection profile holds (`gsm.pin`) at every
activation, to whatever SIM is in the slot, and asks a secret agent for one
when the flags say an agent keeps it.  With `[modem] driver =
"modemmanager"` that would unlock cards mtcd refuses, so mtcd refuses to
start while any GSM profile can supply a PIN.  `pin_sources` is pure (the
keyfile text); `profiles_holding_a_pin` reads NetworkManager's keyfile
directories.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

# Where NetworkManager's keyfile plugin reads profiles (NetworkManager.conf(5)).
PROFILE_DIRS = (
    Path("/etc/NetworkManager/system-connections"),
    Path("/run/NetworkManager/system-connections"),
    Path("/usr/lib/NetworkManager/system-connections"),
)

# NMSettingSecretFlags
AGENT_OWNED, NOT_SAVED, NOT_REQUIRED = 0x1, 0x2, 0x4


@dataclass(frozen=True)
class PinProfile:
    name: str  # the profile's connection.id
    file: str
    why: str

    @property
    def remedy(self) -> str:
        quoted = self.name.replace("'", "'\\''")
        return f"nmcli connection modify '{quoted}' gsm.pin '' gsm.pin-flags not-required"


def pin_source(text: str) -> tuple[str, str] | None:
    """(connection id, why) when this keyfile is a GSM profile that can make
    NetworkManager send a PIN; None otherwise.  Unreadable text counts as a
    profile we cannot vouch for only if it says type=gsm."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # keys are case-sensitive in keyfiles
    try:
        parser.read_string(text)
    except configparser.Error:
        if "gsm" in text:
            return ("(unparsable keyfile)", "is a GSM profile that cannot be read")
        return None
    kind = parser.get("connection", "type", fallback="")
    if kind != "gsm" and not parser.has_section("gsm"):
        return None
    name = parser.get("connection", "id", fallback="") or "(no connection.id)"
    pin = parser.get("gsm", "pin", fallback="")
    try:
        flags = int(parser.get("gsm", "pin-flags", fallback="0") or "0")
    except ValueError:
        return name, "has a gsm.pin-flags value that is not a number"
    if flags & NOT_REQUIRED:
        return None  # NetworkManager neither keeps nor asks for a PIN
    if pin:
        return name, "stores a PIN (gsm.pin)"
    if flags & (AGENT_OWNED | NOT_SAVED):
        return name, "lets a secret agent supply a PIN (gsm.pin-flags)"
    return None


def profiles_holding_a_pin(dirs=PROFILE_DIRS) -> list[PinProfile]:
    found = []
    for directory in dirs:
        try:
            files = sorted(p for p in Path(directory).iterdir() if p.is_file())
        except (FileNotFoundError, NotADirectoryError):
            continue
        except PermissionError:
            raise ConfigError(f"{directory}: cannot read NetworkManager's profiles to check them for a PIN") from None
        for path in files:
            try:
                text = path.read_text(errors="replace")
            except OSError as exc:
                raise ConfigError(f"{path}: cannot read this NetworkManager profile ({exc.strerror})") from None
            source = pin_source(text)
            if source is not None:
                found.append(PinProfile(source[0], str(path), source[1]))
    return found


def refuse_pin_profiles(dirs=PROFILE_DIRS) -> None:
    """ConfigError (exit 78) naming the first profile that would send a PIN,
    and the command that stops it."""
    found = profiles_holding_a_pin(dirs)
    if found:
        first = found[0]
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise ConfigError(f"NetworkManager profile '{first.name}' ({first.file}) {first.why}{more}: NetworkManager "
                          f"would send it to any SIM, behind the pairing gate; remove it with: {first.remedy}")
