"""The virtual USIM lives in the simulator package (mtcd.sim.vusim), where
`make demo` finds it too; run it from here as `python tests/vusim.py ...`."""

import sys

from mtcd.sim.vusim import SimCard, VirtualUsim, main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
