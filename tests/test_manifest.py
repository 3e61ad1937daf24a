"""ingest.state (the manifest, its files) and ingest.crashpoints: the SQLite record of what is indexed,
and the test aid that kills a process at a named place."""

import os
import signal
import subprocess
import sys

import pytest

from ingest import crashpoints
from ingest.errors import RunLockedError, StateError
from ingest.state.files import RunLock, default_state_dir
from ingest.state.manifest import Manifest, ManifestRow
from ingest.store.base import ChunkRef


def open_manifest(path, **overrides):
    options = {"collection": "wiki-1", "fingerprint": "f1", "store": "/q"} | overrides
    return Manifest.open(path, **options)


def test_rows_pending_marks_and_the_seen_set(tmp_path):
    with open_manifest(tmp_path / "m.sqlite") as manifest:
        manifest.mark_pending(["a", "b"])
        manifest.complete([ManifestRow("a", "h1", 3), ManifestRow("c", "h3", 2, rejected=1)])
        rows = manifest.lookup(["a", "b", "c", "zz"])
        assert set(rows) == {"a", "b", "c"}
        assert rows["a"].matches("h1") and not rows["a"].matches("h2") and not rows["a"].pending
        assert rows["b"].pending and rows["b"].article_hash is None and not rows["b"].matches("x")
        assert rows["c"].expected_points == 1 and manifest.expected_points() == 4  # pending rows count nothing
        assert manifest.pending_ids() == ["b"]
        manifest.mark_pending(["a"])  # a changed article keeps its old hash and count while it is rewritten
        assert manifest.lookup(["a"])["a"] == ManifestRow("a", "h1", 3, 0, True, manifest.lookup(["a"])["a"].updated_at)
        manifest.mark_seen(["a", "zz"])
        assert manifest.count_unseen() == 2 and manifest.unseen(1) == ["b"]
        manifest.remove(["b"])
        assert manifest.unseen(10) == ["c"] and manifest.count() == 2
    with open_manifest(tmp_path / "m.sqlite") as reopened:  # rows persist; the seen set does not
        assert reopened.count() == 2 and reopened.count_unseen() == 2


def test_a_manifest_of_another_store_is_rechecked_of_another_collection_refused_of_another_build_emptied(tmp_path):
    with open_manifest(tmp_path / "m.sqlite") as manifest:
        manifest.complete([ManifestRow("a", "h", 1)])
        assert not manifest.recheck
    with open_manifest(tmp_path / "m.sqlite", store="/moved") as manifest:
        assert manifest.recheck and manifest.count() == 1  # kept, but compared before it is trusted
    with pytest.raises(StateError, match="records collection 'wiki-1', not 'wiki-2'"):
        open_manifest(tmp_path / "m.sqlite", collection="wiki-2", store="/moved")
    with open_manifest(tmp_path / "m.sqlite", fingerprint="f2", store="/moved") as manifest:
        assert manifest.count() == 0


def test_comparison_names_each_kind_of_drift_and_fixes_it(tmp_path):
    with open_manifest(tmp_path / "m.sqlite") as manifest:
        manifest.complete(
            [
                ManifestRow("ok", "h", 2),
                ManifestRow("lost", "h", 1),
                ManifestRow("short", "h", 3),
                ManifestRow("extra", "h", 1),
                ManifestRow("stale", "h", 1),
                ManifestRow("refused", "h", 2, rejected=1),
            ]
        )
        manifest.mark_pending(["left"])
        manifest.start_observing()
        manifest.observe(
            [
                ChunkRef(*ref)
                for ref in (
                    ("ok", 0, "h"),
                    ("ok", 1, "h"),
                    ("short", 0, "h"),
                    ("extra", 0, "h"),
                    ("extra", 1, "h"),
                    ("stale", 0, "old"),
                    ("refused", 0, "h"),
                    ("new", 0, "n"),
                    ("new", 1, "n"),
                    ("holey", 0, "x"),
                    ("holey", 2, "x"),
                )
            ]
        )
        found = manifest.compare()
        assert [
            (name, getattr(found, name).examples) for name in ("lost", "short", "extra", "stale", "unknown", "pending")
        ] == [
            ("lost", ("lost",)),
            ("short", ("short",)),
            ("extra", ("extra",)),
            ("stale", ("stale",)),
            ("unknown", ("holey", "new")),
            ("pending", ("left",)),
        ]
        assert found.drifted == 6
        assert manifest.fix_drift() == (4, 2)  # four redone; "new" adopted whole, "holey" as pending
        rows = manifest.lookup(["lost", "new", "holey", "ok", "refused"])
        assert rows["lost"].pending and rows["new"] == ManifestRow("new", "n", 2, 0, False, rows["new"].updated_at)
        assert rows["holey"].pending and rows["holey"].chunk_count is None
        assert not rows["ok"].pending and not rows["refused"].pending
        assert manifest.rebuild_from_observed() == (6, 1)  # repair: the whole ones done, "holey" pending


def test_backup_and_checkpoints(tmp_path):
    copies = []
    with Manifest.open(
        tmp_path / "m.sqlite",
        collection="c",
        fingerprint="f",
        store="s",
        checkpoint=lambda m: (m.backup_to(tmp_path / "copy.sqlite"), copies.append(1)),
        checkpoint_every=3600,
    ) as manifest:
        manifest.complete([ManifestRow("a", "h", 1)])
        assert copies == []  # not due yet
    assert copies == [1]  # on close, having written
    with Manifest.open(tmp_path / "copy.sqlite", collection="c", fingerprint="f", store="s") as copy:
        assert copy.lookup(["a"])["a"].article_hash == "h"


def test_the_state_folder_sits_next_to_the_store():
    assert str(default_state_dir("qdrant_data", None)) == "qdrant_data-state"
    assert str(default_state_dir("/srv/q/", None)) == "/srv/q-state"
    assert str(default_state_dir("qdrant_data", "http://q:6333")) == "ingest_state"
    assert default_state_dir(":memory:", None) is None


def test_one_writer_per_collection(tmp_path):
    with RunLock(tmp_path / "c.lock"):
        holder = f"pid {os.getpid()}"
        with pytest.raises(RunLockedError, match=f"another run is writing this collection \\({holder} holds"):
            with RunLock(tmp_path / "c.lock"):
                pass
    with RunLock(tmp_path / "c.lock"):
        pass  # released


def test_crashpoints_kill_at_the_count_and_are_free_when_off():
    crashpoints.crashpoint("anything")  # not armed: nothing happens
    with pytest.raises(ValueError, match="name:count"):
        crashpoints.arm("before-upsert")
    code = (
        "from ingest import crashpoints\ncrashpoints.arm('here:3')\n"
        "for i in range(5):\n    print(i, flush=True)\n    crashpoints.crashpoint('here')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL and done.stdout.split() == ["0", "1", "2"]
    crashpoints.disarm()


def test_no_credential_of_a_server_url_is_written_to_the_manifest(tmp_path, caplog):
    import sqlite3

    from ingest.settings import StoreSettings
    from ingest.state.files import open_manifest

    url = "https://user:s3cret-pass@qdrant.example:6333/?api_key=k3y-value"
    settings = StoreSettings(qdrant_url=url, state_dir=str(tmp_path))
    with open_manifest(settings, "wiki-1", "fp"):
        pass
    (path,) = tmp_path.glob("*.sqlite")
    raw = path.read_bytes()
    assert b"s3cret-pass" not in raw and b"k3y-value" not in raw and b"user" not in raw
    db = sqlite3.connect(path)
    try:
        assert dict(db.execute("SELECT key, value FROM meta"))["store"] == "https://qdrant.example:6333/"
        db.execute("UPDATE meta SET value = ? WHERE key = 'store'", (url,))  # as an earlier version wrote it
        db.commit()
    finally:
        db.close()
    with open_manifest(StoreSettings(qdrant_url="https://other:6333", state_dir=str(tmp_path)), "wiki-1", "fp"):
        pass
    assert "s3cret-pass" not in caplog.text and "k3y-value" not in caplog.text and "checked" in caplog.text


def test_reads_of_the_whole_manifest_come_a_page_at_a_time(tmp_path):
    """Issue 21: `rows()` read every row at once (6.4M rows: gigabytes); a copy held them all."""
    with open_manifest(tmp_path / "m.sqlite") as manifest, open_manifest(tmp_path / "c.sqlite") as copy:
        manifest.complete([ManifestRow(f"{i:02}", f"h{i}", 1) for i in range(10)])
        manifest.mark_pending(["03", "07", "08"])
        pages = []
        original = manifest._db

        class Rows(list):
            def fetchall(self):
                return list(self)

        class Counting:  # the connection, counting the rows each statement hands back
            def execute(self, *args):
                found = Rows(original.execute(*args))
                pages.append(len(found))
                return found

        manifest._db = Counting()
        try:
            rows = manifest.rows(page=4)
            assert pages == []  # nothing read before the first row is asked for
            assert [r.article_id for r in rows] == [f"{i:02}" for i in range(10)] and pages == [4, 4, 2]
        finally:
            manifest._db = original
        assert manifest.count_pending() == 3 and manifest.pending_ids(2) == ["03", "07"]
        copy.complete(manifest.rows(page=3))  # another manifest's rows, streamed into one transaction
        assert list(copy.rows()) == list(manifest.rows()) and copy.count() == 10
