"""mtcd: UICC-device pairing gate for cellular IoT gateways (3GPP TR 33.868 §7.5)."""

__version__ = "0.1.0"
