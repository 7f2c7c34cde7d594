"""``python -m secure_mor``: the same CLI as the ``secure-mor`` console script."""

import sys

from secure_mor.cli import main

sys.exit(main())
