"""Modem dialects: the generic 27.007 behaviour and one small module per
vendor, chosen by name (configuration) or from the AT+CGMI reply.

Vendor modules are imported only when their dialect is asked for; detection
needs every class's `manufacturers` and so imports them all.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from .base import Dialect, Query

__all__ = ["DIALECTS", "Dialect", "Query", "UnknownDialect", "detect_dialect", "dialect_named"]

# name -> (module under mtcd.vendors, class).  Order is the detection order.
_WHERE = {
    "generic": ("base", "Dialect"),
    "quectel": ("quectel", "QuectelDialect"),
    "simcom": ("simcom", "SimcomDialect"),
    "ublox": ("ublox", "UbloxDialect"),
    "huawei": ("huawei", "HuaweiDialect"),
    "telit": ("telit", "TelitDialect"),
    "sierra": ("sierra", "SierraDialect"),
    "cinterion": ("cinterion", "CinterionDialect"),
}


class _Registry(Mapping[str, type[Dialect]]):
    """Dialect classes by name, each imported on first use."""

    def __getitem__(self, name: str) -> type[Dialect]:
        module, cls = _WHERE[name]
        return getattr(importlib.import_module(f"{__name__}.{module}"), cls)

    def __iter__(self) -> Iterator[str]:
        return iter(_WHERE)

    def __len__(self) -> int:
        return len(_WHERE)

    def __repr__(self) -> str:
        return f"DIALECTS({', '.join(_WHERE)})"


DIALECTS: Mapping[str, type[Dialect]] = _Registry()


class UnknownDialect(KeyError, ValueError):
    """No dialect has that name.  Both a KeyError (lookup) and a ValueError
    (bad setting), so callers may catch either; prints as one plain line."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def dialect_named(name: str) -> Dialect:
    """The dialect called `name` (case and a hyphen ignored: "u-blox" is
    "ublox").  UnknownDialect naming the known dialects for anything else."""
    key = name.strip().lower().replace("-", "")
    if key not in _WHERE:
        raise UnknownDialect(f"unknown modem dialect {name!r}; known: {', '.join(_WHERE)}")
    return DIALECTS[key]()


def detect_dialect(manufacturer: str) -> Dialect:
    """The dialect for a modem whose AT+CGMI reply is `manufacturer`,
    else the generic one."""
    text = manufacturer.lower()
    for cls in DIALECTS.values():
        if any(m in text for m in cls.manufacturers):
            return cls()
    return Dialect()
