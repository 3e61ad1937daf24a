import sys

from ingest.cli import main
from ingest.logs import quiet_on_closed_pipe, stop_on_interrupt

sys.exit(stop_on_interrupt(lambda: quiet_on_closed_pipe(main)))
