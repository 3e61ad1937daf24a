"""ingest.bench.plan: the full-corpus projection and its table."""

from __future__ import annotations

import io

import pytest

from ingest.bench.plan import Assumptions, main, project


def test_the_reference_throughput_reproduces_the_reference_run():
    # 100 A10Gs at 212.6k characters/s each took 15:19 for the corpus in Jan 2024.
    p = project(100, Assumptions(chunk_chars=512, definition_chars=0))  # it embedded chunks only
    assert p.bound == "GPU"
    assert p.wall_seconds == pytest.approx(15 * 60 + 19, abs=2)
    assert p.gpu_hours == pytest.approx(100 * p.wall_seconds / 3600)
    assert p.cost == pytest.approx(p.gpu_hours * 1.1016)


def test_the_production_chunking_makes_about_23_million_points_not_the_references_41():
    assert Assumptions().chunk_chars == 1000  # ingest.modal_app's chunk size
    assert 22_000_000 < Assumptions().chunks < 24_000_000
    assert 38_000_000 < Assumptions(chunk_chars=512).chunks < 42_000_000  # the reference's windows


def test_the_time_to_searchable_adds_the_index_build_and_the_switch_to_the_load():
    a = Assumptions(qdrant_nodes=2, qdrant_cores=8, index_points_per_s_per_core=1000)
    p = project(100, a)
    assert p.index_seconds == pytest.approx((a.chunks + a.articles) / 2 / (1000 * 8))  # each node its half
    assert a.vectors == a.chunks + a.articles  # a definition vector per article beside the chunks
    assert p.switch_seconds == pytest.approx(a.articles / 250_000 + 30)
    assert p.searchable_seconds == pytest.approx(p.wall_seconds + p.index_seconds + p.switch_seconds)
    assert p.gpu_hours == pytest.approx(100 * p.wall_seconds / 3600)  # only the load holds GPUs
    assert project(100, Assumptions(qdrant_nodes=2, replicas=2)).index_seconds == pytest.approx(
        2 * project(100, Assumptions(qdrant_nodes=2)).index_seconds
    )  # every copy is indexed


def test_a_slow_client_bounds_the_gpu_and_raises_the_cost():
    slow = Assumptions(client_chunks_per_s=200)  # 200 x ~472 characters < 212,600
    p = project(10, slow)
    read_per_chunk = slow.embedded_characters / slow.chunks  # a chunk's text and its share of the definitions
    assert p.bound == "client" and p.chars_per_gpu == pytest.approx(200 * read_per_chunk)
    assert p.points_per_s == pytest.approx(200 * 10)
    assert p.cost > project(10, Assumptions()).cost
    assert project(10, Assumptions(client_chunks_per_s=200, client_cores=4)).bound == "GPU"


def test_one_shared_qdrant_bounds_many_gpus():
    a = Assumptions(qdrant_points_per_s=20_000)
    assert project(10, a).bound == "GPU"
    many = project(100, a)
    assert many.bound == "Qdrant" and many.points_per_s == pytest.approx(20_000)
    assert many.chars_per_gpu * 100 == pytest.approx(20_000 * a.embedded_characters / a.chunks)


def test_main_prints_a_row_per_gpu_count():
    out = io.StringIO()
    assert main(["--gpus", "10", "50", "100", "--client-chunks-per-s", "900", "--startup-seconds", "60"], out=out) == 0
    text = out.getvalue()
    rows = [line.split() for line in text.splitlines() if line.strip() and line.split()[0].isdigit()]
    assert [row[0] for row in rows] == ["10", "50", "100"]
    assert all(row[2] == "GPU" for row in rows)
    assert "60 s of start-up added" in text and "$1.1016 per GPU-hour" in text
    header = next(line.split() for line in text.splitlines() if line.strip().startswith("GPUs"))
    assert header[-6:] == ["load", "index", "switch", "searchable", "GPU-hours", "cost"]
    assert all(len(row) == len(header) - 2 for row in rows)  # "chars/s per GPU" is three words
    assert "~22,790,538 chunks of <= 1000 characters" in text  # the production chunking's points
    with pytest.raises(SystemExit):
        main(["--gpus", "0"], out=io.StringIO())


def test_the_cluster_is_sized_per_node_from_the_collection_as_it_is_created():
    from ingest.bench.plan import size_cluster

    one = size_cluster(Assumptions())
    vectors = Assumptions().chunks + Assumptions().articles  # the chunks' and the definitions'
    assert one.ram["vectors"] == pytest.approx(vectors * 384)  # int8 in RAM
    assert one.disk["vectors (float32)"] == pytest.approx(vectors * 384 * 4)  # the originals
    float32 = size_cluster(Assumptions(quantization="none"))
    assert float32.ram["vectors"] == pytest.approx(4 * one.ram["vectors"]) and float32.ram_total > one.ram_total
    assert size_cluster(Assumptions(qdrant_nodes=4)).ram_total == pytest.approx(one.ram_total / 4)
    assert size_cluster(Assumptions(qdrant_nodes=4, replicas=2)).disk_total == pytest.approx(one.disk_total / 2)
    assert 40 < one.ram_total / 1e9 < 80  # the whole corpus on one node, int8: tens of GB, not 63 GB of floats x 1.5


def test_the_table_gives_the_points_per_second_the_cluster_must_take_and_what_bounds_it():
    out = io.StringIO()
    main(["--gpus", "10", "100", "--qdrant-points-per-s", "5000", "--qdrant-nodes", "3", "--replicas", "1"], out=out)
    text = out.getvalue()
    rows = {row[0]: row for row in (line.split() for line in text.splitlines()) if row and row[0].isdigit()}
    assert rows["10"][2] == "GPU" and rows["100"][2] == "Qdrant" and rows["100"][3] == "15,000"
    assert "Qdrant bounds the runs marked so" in text and "on 3 nodes, 1 copy of each" in text
    assert "RAM" in text and "disk" in text


def test_the_definitions_add_their_characters_to_the_load_and_their_vectors_to_the_index():
    plain, defined = Assumptions(definition_chars=0), Assumptions()
    p, q = project(100, plain), project(100, defined)
    assert q.wall_seconds / p.wall_seconds == pytest.approx(
        (defined.characters + defined.articles * defined.definition_chars) / defined.characters
    )
    assert 1.02 < q.wall_seconds / p.wall_seconds < 1.05  # ~105 characters beside ~3,000 an article
    assert q.index_seconds / p.index_seconds == pytest.approx((defined.chunks + defined.articles) / defined.chunks)
