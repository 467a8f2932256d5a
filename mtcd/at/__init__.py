"""AT protocol (3GPP TS 27.007 / V.250) with no I/O: commands, reader, parsers."""
