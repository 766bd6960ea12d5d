"""``python -m huracan COMMAND ...``: the ``huracan`` command (see ``huracan.cli``)."""

import sys

from huracan.cli import main

sys.exit(main())
