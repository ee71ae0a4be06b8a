"""`python -m frozen_bn` runs the `frozen-bn` command line tool."""

import sys

from frozen_bn.cli import main

sys.exit(main())
