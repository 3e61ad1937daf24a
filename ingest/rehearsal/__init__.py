"""Rehearse the production path on this machine before paying for GPUs: a
TEI-protocol server with a GPU's faults (`tei`, run as a process taking the router's
flags by `router`), on the loopback HTTP plumbing the stand-ins share (`loopback`),
and the sharded load's driver over a local pool of workers (`fleet`), the command
`python -m ingest rehearse` (`load`)."""
