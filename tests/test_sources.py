import json

import pytest

from ingest.errors import SourceError
from ingest.sources import open_source, sample_rows, wikipedia_url


def test_the_bundled_sample_has_every_lead_section_in_the_article_schema(sample):
    assert len(sample) == 10_033
    by_title = {row["title"]: row for row in sample}
    odyssey = by_title["2001: A Space Odyssey"]
    assert odyssey["url"] == "https://en.wikipedia.org/wiki/2001:_A_Space_Odyssey"
    assert "Stanley Kubrick" in odyssey["text"]
    assert len({row["id"] for row in sample}) == len(sample)  # ids are unique
    assert sample_rows()[5]["id"] == sample[5]["id"]  # and stable


def test_wikipedia_urls_escape_what_needs_escaping():
    assert wikipedia_url("Café au lait") == "https://en.wikipedia.org/wiki/Caf%C3%A9_au_lait"
    assert wikipedia_url("AC/DC") == "https://en.wikipedia.org/wiki/AC%2FDC"


def test_limit_applies_to_the_sample():
    source = open_source("sample", limit=7)
    assert source.total == 7 and len(list(source)) == 7


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_local_jsonl_parquet_and_saved_datasets_read_alike(tmp_path, sample):
    import datasets

    rows = sample[:5]
    jsonl = write_jsonl(tmp_path / "a.jsonl", rows)
    parquet = tmp_path / "a.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(parquet))
    saved = tmp_path / "saved"
    datasets.Dataset.from_list(rows).save_to_disk(str(saved))
    folder = tmp_path / "folder"
    folder.mkdir()
    write_jsonl(folder / "part-0.jsonl", rows[:2])
    write_jsonl(folder / "part-1.jsonl", rows[2:])
    for spec in (jsonl, parquet, saved, folder):
        got = [{k: r[k] for k in ("id", "url", "title", "text")} for r in open_source(str(spec))]
        assert got == rows, spec
    assert len(list(open_source(str(parquet), limit=2))) == 2


def test_a_source_missing_a_column_fails_at_once_naming_it(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"id": "1", "url": "u", "text": "t"}])
    with pytest.raises(SourceError, match="lacks the required column 'title'"):
        open_source(str(path))


def test_a_json_lines_file_whose_first_row_lacks_a_column_is_read_and_that_row_dead_lettered(tmp_path):
    """Issue 19: columns were judged from the first row alone, so 0 of 10 rows were written."""
    from ingest.pipeline.deadletters import MemorySink
    from ingest.pipeline.run import articles_from_rows
    from ingest.pipeline.summary import RunSummary

    rows = [{"id": "0", "url": "u", "text": "no title here"}] + [
        {"id": str(i), "url": "u", "title": f"T{i}", "text": "words"} for i in range(1, 10)
    ]
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    summary, sink = RunSummary(), MemorySink("test")
    articles = list(articles_from_rows(open_source(str(path)), summary, sink))
    assert [a.id for a in articles] == [str(i) for i in range(1, 10)]
    assert summary.invalid == 1 and "article '0': field 'title' is missing" in sink.records[0]["message"]
    anonymous = write_jsonl(tmp_path / "anonymous.jsonl", rows[1:3] + [{"url": "u", "title": "T", "text": "x"}])
    summary, sink = RunSummary(), MemorySink("test")
    list(articles_from_rows(open_source(str(anonymous)), summary, sink))
    assert sink.records[0]["message"].startswith("row 3 ('T'): field 'id' is missing")  # counted from 1


@pytest.mark.parametrize(
    "spec, message",
    [("no/such/path.txt", "neither 'sample'"), ("./missing.parquet", "no such file"), ("data/x.jsonl", "no such file")],
)
def test_an_unknown_source_says_what_is_accepted(spec, message):
    with pytest.raises(SourceError, match=message):
        open_source(spec)


def test_an_unreadable_file_is_reported_with_its_path(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(SourceError, match="notes.txt"):
        open_source(str(path))


def test_a_mixed_folder_yields_every_file_in_name_order_and_honours_the_limit(tmp_path, sample):
    import datasets

    rows = sample[:6]
    folder = tmp_path / "folder"
    folder.mkdir()
    write_jsonl(folder / "1.jsonl", rows[:2])
    datasets.Dataset.from_list(rows[2:4]).to_parquet(str(folder / "2.parquet"))
    write_jsonl(folder / "3.ndjson", rows[4:])
    source = open_source(str(folder))
    got = [{k: r[k] for k in ("id", "url", "title", "text")} for r in source]
    assert got == rows and list(source) and source.total is None  # iterable again; streamed: no total
    assert [r["id"] for r in open_source(str(folder), limit=3)] == [r["id"] for r in rows[:3]]


def test_a_file_of_a_mixed_folder_lacking_a_column_is_named(tmp_path, sample):
    import datasets

    folder = tmp_path / "folder"
    folder.mkdir()
    write_jsonl(folder / "1.jsonl", sample[:2])
    datasets.Dataset.from_list([{"id": "x", "url": "u", "text": "t"}]).to_parquet(str(folder / "2.parquet"))
    with pytest.raises(SourceError, match=r"2\.parquet lacks the required column 'title'"):
        open_source(str(folder))


def test_unreadable_lines_are_dead_lettered_and_the_rest_of_the_file_is_read(tmp_path):
    from ingest.pipeline.deadletters import MemorySink
    from ingest.pipeline.run import articles_from_rows
    from ingest.pipeline.summary import RunSummary
    from ingest.sources import open_source

    good = [json.dumps({"id": str(i), "url": "u", "title": f"T{i}", "text": "words"}) for i in range(4)]
    lines = [
        good[0],
        '{"id": "x", "text": "\\ud800 a lone surrogate"}',
        good[1],
        "[1, 2]",
        good[2],
        '{"id": "9", "text": "cut short',
        good[3],
    ]
    (tmp_path / "rows.jsonl").write_bytes("\n".join(lines).encode() + b"\n" + b'{"id": "\xff"}\n')
    summary, sink = RunSummary(), MemorySink("test")
    articles = list(articles_from_rows(open_source(str(tmp_path / "rows.jsonl")), summary, sink))
    assert [a.id for a in articles] == ["0", "1", "2", "3"]
    assert summary.unreadable == 4 and summary.failed == 4
    messages = [record["message"] for record in sink.records]
    assert [m.split(": ")[0].rsplit(", ", 1)[1] for m in messages] == ["line 2", "line 4", "line 6", "line 8"]
    assert all(str(tmp_path / "rows.jsonl") in m for m in messages)
    assert open_source(str(tmp_path / "rows.jsonl")).total == 8  # lines that hold something


def test_empty_files_hold_no_articles(tmp_path):
    from ingest.sources import open_source

    for name in ("empty.jsonl", "empty.json", "empty.parquet"):
        (tmp_path / name).write_bytes(b"")
        source = open_source(str(tmp_path / name))
        assert list(source) == [] and source.total == 0
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.jsonl").write_bytes(b"")
    (folder / "b.jsonl").write_text(json.dumps({"id": "1", "url": "u", "title": "T", "text": "x"}) + "\n")
    assert [row["id"] for row in open_source(str(folder))] == ["1"]


def test_duplicate_ids_keep_the_first_row_and_are_reported_by_row():
    from ingest.pipeline.deadletters import MemorySink
    from ingest.pipeline.run import articles_from_rows
    from ingest.pipeline.summary import RunSummary

    rows = [
        {"id": "1", "url": "u", "title": "First", "text": "one"},
        {"id": "2", "url": "u", "title": "Other", "text": "two"},
        {"id": "1", "url": "u", "title": "Again", "text": "uno"},
        {"id": "3", "url": "u", "title": "\u200b\u200d", "text": "x"},  # a title of zero-width characters
        {"id": "4", "url": "u", "title": "Blank", "text": "\u200b \ufeff"},
    ]  # no visible content
    summary, sink = RunSummary(), MemorySink("test")
    kept = list(articles_from_rows(rows, summary, sink))
    assert [(a.id, a.title) for a in kept] == [("1", "First"), ("2", "Other")]
    assert (summary.duplicates, summary.invalid, summary.skipped_empty) == (1, 1, 1)
    assert "appears again in row 3, after row 1: the first is kept" in sink.records[0]["message"]  # from 1
    assert "title" in sink.records[1]["message"] and "invisible" in sink.records[1]["message"]
    assert "duplicate ids left out 1" in summary.report()


def test_a_json_file_of_objects_one_a_line_is_read_line_by_line_and_an_array_by_datasets(tmp_path):
    from ingest.pipeline.deadletters import MemorySink
    from ingest.pipeline.run import articles_from_rows
    from ingest.pipeline.summary import RunSummary
    from ingest.sources import open_source

    rows = [{"id": str(i), "url": "u", "title": f"T{i}", "text": "x"} for i in range(3)]
    lines = [json.dumps(r) for r in rows]
    (tmp_path / "lines.json").write_text(lines[0] + "\n{not json\n" + lines[1] + "\n" + lines[2] + "\n")
    summary, sink = RunSummary(), MemorySink("test")
    assert [a.id for a in articles_from_rows(open_source(str(tmp_path / "lines.json")), summary, sink)] == [
        "0",
        "1",
        "2",
    ]
    assert summary.unreadable == 1 and "lines.json, line 2" in sink.records[0]["message"]
    (tmp_path / "array.json").write_text(json.dumps(rows))
    assert [row["id"] for row in open_source(str(tmp_path / "array.json"))] == ["0", "1", "2"]


def test_duplicates_are_found_across_read_ahead_batches_and_rows_before_a_failure_are_kept(monkeypatch):
    """Issue 21: the ids met are kept on disk (`FirstRows`), checked a batch of rows at a time."""
    from ingest.pipeline import run
    from ingest.pipeline.deadletters import MemorySink
    from ingest.pipeline.summary import RunSummary

    monkeypatch.setattr(run, "READ_AHEAD", 2)
    rows = [{"id": str(i % 3), "url": "u", "title": f"T{i}", "text": "x"} for i in range(7)]
    summary, sink = RunSummary(), MemorySink("test")
    kept = list(run.articles_from_rows(rows, summary, sink))
    assert [a.title for a in kept] == ["T0", "T1", "T2"] and summary.duplicates == 4
    assert "appears again in row 7, after row 1" in sink.records[-1]["message"]

    def failing():
        yield from rows[:3]
        raise SourceError("the source went away")

    seen = []
    with pytest.raises(SourceError, match="went away"):
        for article in run.articles_from_rows(failing(), RunSummary(), MemorySink("test")):
            seen.append(article.title)
    assert seen == ["T0", "T1", "T2"]  # the rows read before the failure were handled first


def test_invalid_ids_are_handed_on_a_batch_at_a_time(monkeypatch):
    from ingest.pipeline import run
    from ingest.pipeline.deadletters import MemorySink
    from ingest.pipeline.summary import RunSummary

    monkeypatch.setattr(run, "READ_AHEAD", 2)
    rows = [{"id": str(i), "url": "u", "title": "" if i % 2 else f"T{i}", "text": "x"} for i in range(6)]
    batches = []
    kept = list(run.articles_from_rows(rows, RunSummary(), MemorySink("test"), batches.append))
    assert [a.id for a in kept] == ["0", "2", "4"] and batches == [["1"], ["3"], ["5"]]
