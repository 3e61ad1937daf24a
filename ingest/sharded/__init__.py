"""The sharded load on GPU containers, in plain Python (`ingest.modal_app` only
declares the infrastructure around it, and `python -m ingest rehearse` runs the same
code on one machine): the pinned model and its weights (`weights`), the TEI server a
container runs (`router`), what one container does with it (`worker`), one shard
through the pipeline (`shard`), the records that let a stopped load resume
(`records`), what happens before and after the shards (`load`), the driver's fan-out
and report (`driver`), the scheduled reindex (`reindex`), and the checks only a
container can make before a full run (`checks`)."""
