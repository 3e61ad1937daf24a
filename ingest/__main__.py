import sys

from ingest.cli import main
from ingest.logs import quiet_on_closed_pipe

sys.exit(quiet_on_closed_pipe(main))
