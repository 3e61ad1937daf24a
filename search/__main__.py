import sys

from search.cli import console

sys.exit(console())
