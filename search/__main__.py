import sys

from ingest.logs import quiet_on_closed_pipe
from search.cli import main

sys.exit(quiet_on_closed_pipe(main))
