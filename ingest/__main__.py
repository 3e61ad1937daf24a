import sys

from ingest.cli import console

sys.exit(console())
