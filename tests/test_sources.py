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


@pytest.mark.parametrize("spec, message", [("no/such/path.txt", "neither 'sample'"), ("./missing.parquet", "no such file"), ("data/x.jsonl", "no such file")])
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


def test_a_json_lines_row_that_is_not_an_object_is_named_by_file_and_line(tmp_path):
    from ingest.errors import SourceError
    from ingest.sources import open_source

    good = '{"id": "1", "url": "u", "title": "T", "text": "x"}\n'
    (tmp_path / "rows.jsonl").write_bytes((good + "\n" + good).encode() + b'{"id": "3", "text": "\xff"}\n')
    source = open_source(str(tmp_path / "rows.jsonl"))
    assert source.total == 3  # lines that hold something
    with pytest.raises(SourceError, match=r"rows\.jsonl, line 4: not a JSON object"):
        list(source)
    (tmp_path / "rows.jsonl").write_text(good + "[1, 2]\n")
    with pytest.raises(SourceError, match=r"line 2: a JSON list, not an object"):
        list(open_source(str(tmp_path / "rows.jsonl")))
