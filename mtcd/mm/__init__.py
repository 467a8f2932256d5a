"""`[modem] driver = "modemmanager"`: the pairing gate in front of ModemManager.

ModemManager owns the modem's ports; mtcd reads the lock, identities and
attempts it reports over D-Bus and presents the PIN with `Sim.SendPin`, only
where the same policy (mtcd.policy, mtcd.gate) would send AT+CPIN over the
serial port.  `states` is pure (ModemManager's numbers to the project's
facts); `bus` is the thin D-Bus edge (python3-jeepney); `gateway` puts them
behind the Gateway the rest of mtcd already drives.
"""
