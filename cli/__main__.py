"""python -m vpkl.cli: the vpkl command line."""
import sys

from vpkl.cli import main

sys.exit(main())
