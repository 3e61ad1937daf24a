"""Benchmarks that print figures (never timed tests): `throughput` (`python -m ingest
bench`), `reindex` (`bench-reindex`), `tei_client` (`bench-tei`) and `plan` (the
full-corpus projection)."""
