#!/usr/bin/env python
"""Generate the synthetic street-scene domains under ROOT (``--help``; the code: :mod:`mfuser.data.synthetic.cli`)."""
import sys

from mfuser.data.synthetic.cli import main

if __name__ == "__main__":
    sys.exit(main())
