"""The sharded load on GPU containers, in plain Python (`ingest.modal_app` only
declares the infrastructure around it): the TEI server a container runs
(`router`), one shard through the pipeline (`shard`), the records that let a
stopped load resume (`records`), what happens before and after the shards
(`load`), the driver's fan-out and report (`driver`), and the scheduled reindex
(`reindex`)."""
