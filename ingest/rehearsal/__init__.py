"""Rehearse the production path on this machine before paying for GPUs: a
TEI-protocol server with a GPU's faults (`tei`), and the sharded load's driver over
a local pool of workers, each with its own TEI server (`python -m ingest rehearse`)."""
