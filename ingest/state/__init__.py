"""What is indexed, and keeping it true: the manifest (`manifest`) and where its
files live (`files`), checking it against the collection (`reconcile`), and which
collection a run writes and the alias switch onto it (`rebuild`)."""
