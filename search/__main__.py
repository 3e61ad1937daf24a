import sys

from ingest.logs import quiet_on_closed_pipe, stop_on_interrupt
from search.cli import main

sys.exit(stop_on_interrupt(lambda: quiet_on_closed_pipe(main)))
