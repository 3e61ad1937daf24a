"""Benchmarks that print figures (never timed tests): `throughput` (`python -m ingest
bench`), `reindex` (`bench-reindex`), `tei_client` (`bench-tei`), `quantization`
(`bench-quantization`), `store` (`bench-store`), `faults` (`bench-faults`) and `plan`
(the full-corpus projection)."""
