"""Retrieval evaluation: metrics on hand-checked cases, question files good and bad,
the shipped question set against the bundled sample, and an eval over a tiny real index."""

import json
import logging
import re
from collections import Counter
from dataclasses import dataclass

import pytest

from ingest import lexical
from search.evaluation import (
    DESCRIPTIVE_HELDOUT,
    DESCRIPTIVE_QUESTIONS,
    HELDOUT_QUESTIONS,
    SAMPLE_QUESTIONS,
    SHORT_QUESTIONS,
    EvalResult,
    Question,
    QuestionFileError,
    build_parser,
    compare_modes,
    dedupe,
    evaluate,
    format_table,
    load_questions,
    main,
    percentile,
    rank_articles,
    recall_at,
    reciprocal_rank,
    run_eval,
)
from search.evaluation.variants import default_variants


@dataclass
class FakeHit:
    title: str
    article_id: str = ""


class FakeSearcher:
    """Answers each query with canned hits and records what it was asked."""

    def __init__(self, answers: dict[str, list[FakeHit]]):
        self.answers, self.asked = answers, []

    def search(self, query, *, k=5):
        self.asked.append((query, k))
        return self.answers[query][:k]


def fake_clock(*durations):
    """A clock whose successive start/stop readings are `durations` seconds apart."""
    readings, now = [], 0.0
    for duration in durations:
        readings += [now, now + duration]
        now += duration + 1.0
    return iter(readings).__next__


# -- metrics -----------------------------------------------------------------
# Four questions, chunk-level rankings (an article may appear more than once). Worked by hand:
#   q1 answer B: articles A, B, C        -> rank 2: r@1 0, r@2 1, r@3 1, RR 1/2
#   q2 answer X: articles X              -> rank 1: r@1 1, r@2 1, r@3 1, RR 1
#   q3 answer Z: articles A, B, C, Z     -> rank 4, beyond the cut-off 3: all 0, RR@3 0
#   q4 answer D: articles C, D           -> rank 2 (4th chunk, 2nd article): r@1 0, r@2 1, r@3 1, RR 1/2
# recall@1 = 1/4, recall@2 = 3/4, recall@3 = 3/4, MRR@3 = (1/2 + 1 + 0 + 1/2) / 4 = 1/2
TOY_RANKINGS = [["A", "B", "A", "C"], ["X"], ["A", "B", "C", "Z"], ["C", "C", "C", "D"]]
TOY_ANSWERS = ["B", "X", "Z", "D"]


def test_metrics_on_a_hand_checked_toy_case():
    result = evaluate(TOY_RANKINGS, TOY_ANSWERS, ks=(1, 2, 3), questions=["q1", "q2", "q3", "q4"])
    assert result.ks == (1, 2, 3)
    assert result.recall == {1: 0.25, 2: 0.75, 3: 0.75}
    assert result.mrr == 0.5
    assert [q.rank for q in result.questions] == [2, 1, 4, 2]
    assert result.questions[2].top == ("A", "B", "C")  # cut at max(k)
    assert [q.question for q in result.misses] == ["q3"]
    assert result.latency_ms == {}


def test_recall_and_reciprocal_rank_count_articles_not_chunks():
    chunks = ["C", "C", "C", "D"]
    assert dedupe(chunks) == ["C", "D"]
    assert recall_at(chunks, "D", 2) == 1.0 and recall_at(chunks, "D", 1) == 0.0
    assert reciprocal_rank(chunks, "D") == 0.5
    assert reciprocal_rank(["A", "B", "C", "Z"], "Z") == 0.25
    assert reciprocal_rank(["A", "B", "C", "Z"], "Z", 3) == 0.0  # below the cut-off counts as not found
    assert reciprocal_rank(["A"], "Q") == 0.0 and recall_at([], "Q", 10) == 0.0


def test_metrics_refuse_nonsense():
    with pytest.raises(ValueError, match="at least 1"):
        recall_at(["A"], "A", 0)
    with pytest.raises(ValueError, match="at least 1"):
        evaluate([["A"]], ["A"], ks=(0, 5))
    with pytest.raises(ValueError, match="2 rankings for 1 answers"):
        evaluate([["A"], ["B"]], ["A"])
    with pytest.raises(ValueError, match="no questions"):
        evaluate([], [])


def test_percentile_interpolates_between_ranks():
    assert percentile([0.010, 0.100, 0.020], 50) == pytest.approx(0.020)
    assert percentile([0.010, 0.020, 0.100], 95) == pytest.approx(0.092)  # 0.02 + 0.9 * (0.10 - 0.02)
    assert percentile([5.0], 95) == 5.0


def test_chunks_collapse_to_articles_by_id_keeping_the_first_rank():
    hits = [FakeHit("A", "a"), FakeHit("B", "b"), FakeHit("A", "a"), FakeHit("C", "c"), FakeHit("B", "b")]
    assert rank_articles(hits) == ["A", "B", "C"]
    # two articles that share a title stay two articles; without an id the title is the key
    assert rank_articles([FakeHit("Mercury", "planet"), FakeHit("Mercury", "element")]) == ["Mercury", "Mercury"]
    assert rank_articles([FakeHit("A"), FakeHit("A"), FakeHit("B")]) == ["A", "B"]


def test_run_eval_asks_for_enough_chunks_and_times_each_query():
    searcher = FakeSearcher(
        {
            "first": [FakeHit("A", "a"), FakeHit("A", "a"), FakeHit("B", "b")],
            "second": [FakeHit("C", "c"), FakeHit("D", "d")],
            "third": [FakeHit("E", "e")],
        }
    )
    questions = [Question("first", "B"), Question("second", "C"), Question("third", "Z")]
    result = run_eval(searcher, questions, ks=(1, 10), clock=fake_clock(0.010, 0.020, 0.100))
    assert searcher.asked == [("first", 30), ("second", 30), ("third", 30)]
    assert result.chunks == 30
    assert result.recall == {1: pytest.approx(1 / 3), 10: pytest.approx(2 / 3)}
    assert result.mrr == pytest.approx((0.5 + 1 + 0) / 3)
    assert result.latency_ms == {"median": pytest.approx(20.0), "p95": pytest.approx(92.0)}
    assert [q.seconds for q in result.questions] == pytest.approx([0.010, 0.020, 0.100])
    data = result.to_dict()
    assert data["questions"] == 3 and data["recall@10"] == pytest.approx(2 / 3) and "mrr@10" in data
    assert data["results"][0] == {
        "question": "first",
        "answer": "B",
        "rank": 2,
        "top": ("A", "B"),
        "seconds": pytest.approx(0.010),
    }
    json.dumps(data)


def test_run_eval_refuses_fewer_chunks_than_articles_wanted():
    with pytest.raises(ValueError, match="--chunks 5 cannot fill 10 articles"):
        run_eval(FakeSearcher({}), [Question("q", "A")], ks=(10,), chunks=5)


def test_the_table_names_each_metric_and_the_misses():
    result = evaluate(
        TOY_RANKINGS, TOY_ANSWERS, ks=(1, 2, 3), questions=["q1", "q2", "q3", "q4"], seconds=[0.01, 0.02, 0.03, 0.04]
    )
    table = format_table(result)
    assert "recall@1   0.250  (1/4)" in table
    assert "recall@3   0.750  (3/4)" in table and "MRR@3      0.500" in table
    assert "latency    median 25.0 ms, p95 38.5 ms (embedding included)" in table
    assert "not in the top 3 (1), first 1:\n- q3\n    want Z (rank 4); got A, B, C" in table
    assert "not in the top" not in format_table(result, misses=0)


# -- question files ----------------------------------------------------------
def write(tmp_path, *lines):
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_question_file_loads_with_line_numbers_and_skips_blank_lines(tmp_path):
    path = write(tmp_path, '{"question": "Who?", "title": "A"}', "", '{"question": " What? ", "title": "B", "x": 1}')
    assert load_questions(path) == [Question("Who?", "A", 1), Question("What?", "B", 3)]


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"question": "Who?", "title": "A"', r"q\.jsonl:2: not valid JSON"),
        ('["Who?", "A"]', r"q\.jsonl:2: expected a JSON object with 'question' and 'title', got list"),
        ('{"title": "A"}', r"q\.jsonl:2: missing field 'question'"),
        ('{"question": "Who?"}', r"q\.jsonl:2: missing field 'title'"),
        ('{"question": "   ", "title": "A"}', r"q\.jsonl:2: field 'question' is empty"),
        ('{"question": "Who?", "title": ""}', r"q\.jsonl:2: field 'title' is empty"),
        ('{"question": "Who?", "title": 7}', r"q\.jsonl:2: field 'title' must be a string, got int"),
    ],
)
def test_a_bad_line_is_named_with_its_field(tmp_path, line, message):
    path = write(tmp_path, '{"question": "Fine?", "title": "A"}', line)
    with pytest.raises(QuestionFileError, match=message):
        load_questions(path)


def test_an_empty_or_missing_question_file_is_refused(tmp_path):
    with pytest.raises(QuestionFileError, match="holds no questions"):
        load_questions(write(tmp_path, "", "  "))
    with pytest.raises(QuestionFileError, match="nope.jsonl does not exist"):
        load_questions(tmp_path / "nope.jsonl")


def test_the_command_reports_a_bad_question_file_and_bad_usage(tmp_path, capsys, caplog):
    path = write(tmp_path, '{"question": "Who?"}')
    assert main(["--questions", str(path), "--qdrant-path", str(tmp_path / "q")]) == 1
    assert "missing field 'title'" in caplog.text
    assert main(["-k", "0"]) == 2
    assert main(["-k", "10", "--chunks", "5"]) == 2
    assert "--chunks 5 cannot fill 10 articles" in capsys.readouterr().err


# -- the shipped question set ------------------------------------------------
# Questions whose answer title (longer than 12 characters) they spell out; keep this empty
# unless a question cannot be asked naturally otherwise.
TITLE_IN_QUESTION_EXCEPTIONS: set[str] = set()
COPIED_WORDS = 8  # a question sharing this many consecutive words with its article's lead was copied


@pytest.fixture(scope="module")
def shipped():
    return load_questions(SAMPLE_QUESTIONS)


@pytest.fixture(scope="module")
def leads():
    from ingest.sources import sample_rows

    return {row["title"]: row["text"] for row in sample_rows()}


def test_the_shipped_set_is_large_and_every_answer_is_an_article_of_the_sample(shipped, leads):
    assert len(shipped) >= 200
    missing = [q.title for q in shipped if q.title not in leads]
    assert not missing, f"titles not in the bundled sample: {missing}"
    assert len({q.question for q in shipped}) == len(shipped), "a question appears twice"


def test_no_article_answers_more_than_two_questions(shipped):
    crowded = {title: n for title, n in Counter(q.title for q in shipped).items() if n > 2}
    assert not crowded


def test_questions_do_not_spell_out_their_answer(shipped):
    spelled = [
        (q.line, q.title)
        for q in shipped
        if len(q.title) > 12 and q.title.lower() in q.question.lower() and q.title not in TITLE_IN_QUESTION_EXCEPTIONS
    ]
    assert not spelled


def test_questions_are_not_copied_from_the_indexed_text(shipped, leads):
    def words(text):
        return re.findall(r"[a-z0-9]+", text.lower())

    def runs(tokens):
        return {tuple(tokens[i : i + COPIED_WORDS]) for i in range(len(tokens) - COPIED_WORDS + 1)}

    copied = [(q.line, q.title) for q in shipped if runs(words(q.question)) & runs(words(leads[q.title]))]
    assert not copied, f"questions sharing {COPIED_WORDS}+ consecutive words with their article: {copied}"


def test_the_shipped_set_spreads_over_the_samples_topics(shipped):
    from ingest.sources import sample_path

    topics = {
        record.get("title") or key: record.get("topic")
        for key, record in json.loads(sample_path().read_text(encoding="utf-8")).items()
    }
    covered = Counter(topics[q.title] for q in shipped)
    assert len(covered) >= 10, covered
    assert max(covered.values()) <= len(shipped) / 4, covered


# -- end to end on a tiny real index -----------------------------------------
# Ten shipped questions whose articles are indexed, among twenty neighbours that compete with them.
ASKED = [
    "2001: A Space Odyssey",
    "Mount Everest",
    "Marie Curie",
    "Photosynthesis",
    "Chess",
    "Berlin Wall",
    "Sushi",
    "Pythagorean theorem",
    "Taj Mahal",
    "Transistor",
]
NEIGHBOURS = [
    "Citizen Kane",
    "Psycho (1960 film)",
    "Himalayas",
    "Mount Kilimanjaro",
    "Albert Einstein",
    "Pierre Curie",
    "Chlorophyll",
    "Go (game)",
    "Cold War",
    "Cuban Missile Crisis",
    "Tofu",
    "Sake",
    "Pi",
    "Euclid",
    "Angkor Wat",
    "Great Wall of China",
    "Integrated circuit",
    "Diode",
    "Jupiter",
    "Mount Fuji",
]


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory, local_embedder, shipped):
    from ingest.jobs import run_ingest
    from ingest.settings import IngestSettings, StoreSettings
    from ingest.sources import sample_rows

    tmp = tmp_path_factory.mktemp("eval")
    rows = {row["title"]: row for row in sample_rows()}
    source = tmp / "tiny.jsonl"
    source.write_text(
        "".join(json.dumps(rows[t], ensure_ascii=False) + "\n" for t in ASKED + NEIGHBOURS), encoding="utf-8"
    )
    settings = IngestSettings(
        source=str(source),
        progress=False,
        dead_letter=str(tmp / "dead_letter.jsonl"),
        store=StoreSettings(qdrant_path=str(tmp / "qdrant"), collection="eval"),
    )
    summary = run_ingest(settings, embedder=local_embedder)
    assert summary.articles == 30 and summary.invalid == 0
    questions = [q for q in shipped if q.title in ASKED]
    questions_file = tmp / "questions.jsonl"
    questions_file.write_text(
        "".join(json.dumps({"question": q.question, "title": q.title}) + "\n" for q in questions), encoding="utf-8"
    )
    return settings, questions, questions_file


def test_an_eval_over_a_tiny_index_finds_most_answers(tiny_index, local_embedder):
    from search import Searcher

    settings, questions, _ = tiny_index
    with Searcher.open(settings.store, embedder=local_embedder) as searcher:
        result = run_eval(searcher, questions)
    print("\n" + format_table(result))
    assert isinstance(result, EvalResult) and len(result.questions) == len(ASKED)
    assert result.ks == (1, 5, 10) and result.chunks == 30
    assert 0.0 <= result.recall[1] <= result.recall[5] <= result.recall[10] <= 1.0
    assert result.recall[1] <= result.mrr <= result.recall[10]
    assert result.recall[10] > 0.5
    assert all(len(q.top) <= 10 and len(set(q.top)) == len(q.top) for q in result.questions)
    assert 0 < result.latency_ms["median"] <= result.latency_ms["p95"]


def test_the_command_evaluates_the_tiny_index_as_json(tiny_index, capsys):
    settings, questions, questions_file = tiny_index
    code = main(
        [
            "--questions",
            str(questions_file),
            "--qdrant-path",
            settings.store.qdrant_path,
            "--collection",
            settings.store.collection,
            "--device",
            "cpu",
            "-k",
            "1",
            "3",
            "--json",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["questions"] == len(questions) and report["chunks_per_question"] == 9
    assert set(report) >= {"recall@1", "recall@3", "mrr@3", "latency_ms", "results"}
    assert report["recall@3"] > 0.5


def test_the_command_compares_modes_side_by_side(tiny_index, capsys):
    settings, questions, questions_file = tiny_index
    args = [
        "--questions",
        str(questions_file),
        "--qdrant-path",
        settings.store.qdrant_path,
        "--collection",
        settings.store.collection,
        "--device",
        "cpu",
        "-k",
        "1",
        "5",
    ]
    assert main(args + ["--mode", "dense", "hybrid", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"dense", "hybrid"}
    for mode, outcome in report.items():
        assert outcome["mode"] == mode and outcome["questions"] == len(questions)
        assert 0 < outcome["latency_ms"]["median"] <= outcome["latency_ms"]["p95"]
    assert main(args + ["--mode", "dense", "hybrid", "--misses", "0"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["dense", "hybrid"]
    assert [line.split()[0] for line in table[1:6]] == ["questions", "recall@1", "recall@5", "MRR@5", "latency"]


def test_compare_modes_asks_each_question_in_each_mode_in_turn():
    asked = []

    class ModeSearcher:
        def search(self, query, *, k, mode=None):
            asked.append((query, mode))
            title = "A" if mode == "hybrid" else "B"
            return [type("Hit", (), {"title": title, "article_id": title})()]

    questions = [Question("q1", "A"), Question("q2", "A")]
    results = compare_modes(ModeSearcher(), questions, modes=("dense", "hybrid"), ks=(1,))
    assert asked == [("q1", "dense"), ("q1", "hybrid"), ("q2", "dense"), ("q2", "hybrid")]
    assert (results["dense"].recall[1], results["hybrid"].recall[1]) == (0.0, 1.0)


def test_an_eval_on_a_partial_index_says_which_answers_are_missing_and_shows_progress(
    tiny_index, tmp_path, capsys, caplog
):
    settings, questions, _ = tiny_index
    caplog.set_level(logging.INFO)
    assert build_parser().parse_args([]).verbose == 1  # INFO by default: the steps of a long job
    partial = tmp_path / "partial.jsonl"  # two answers that the tiny index does not hold
    partial.write_text(
        "".join(json.dumps({"question": q.question, "title": q.title}) + "\n" for q in questions[:3])
        + json.dumps({"question": "the tallest mountain in Africa", "title": "Mount Kenya"})
        + "\n"
        + json.dumps({"question": "a red planet", "title": "Mars"})
        + "\n",
        encoding="utf-8",
    )
    assert (
        main(
            [
                "--questions",
                str(partial),
                "--qdrant-path",
                settings.store.qdrant_path,
                "--collection",
                settings.store.collection,
                "--device",
                "cpu",
                "--json",
            ]
        )
        == 0
    )
    assert (
        "2 of the 5 answering articles are not in the collection (a partial index?), e.g. 'Mount Kenya', "
        "'Mars'" in caplog.text
    )
    assert "questions 5/5" in capsys.readouterr().err  # the progress line
    assert "loading sentence-transformers/all-MiniLM-L6-v2 (torch and the weights)" in caplog.text  # timed
    assert re.search(r"loaded sentence-transformers/all-MiniLM-L6-v2 in \d+\.\d s", caplog.text)


def test_searching_a_folder_without_a_store_does_not_make_one(tmp_path, caplog):
    from search.cli import main as search_main

    assert search_main(["--qdrant-path", str(tmp_path / "nothing"), "hal 9000"]) == 1
    assert "no store at " in caplog.text and not (tmp_path / "nothing").exists()


# -- the short and descriptive query sets ---------------------------------------
# short.jsonl and descriptive.jsonl are the sets the search defaults are tuned on; short_heldout.jsonl and
# descriptive_heldout.jsonl are held out from them (and from sample.jsonl) and only reported. All four are
# held to the rules that can be checked mechanically.
SHORT_SETS = {
    "short": SHORT_QUESTIONS,
    "short_heldout": HELDOUT_QUESTIONS,
    "descriptive": DESCRIPTIVE_QUESTIONS,
    "descriptive_heldout": DESCRIPTIVE_HELDOUT,
}
DESCRIPTIVE_SETS = ("descriptive", "descriptive_heldout")
SHORT_COPIED_WORDS = 6  # a short query sharing this many consecutive words with its article's lead was copied
# Words in a query: the way people type into a search box; a short description ("Genus of Late Jurassic
# theropod dinosaurs") runs a little longer.
SHORT_WORDS = {"short": (2, 6), "short_heldout": (2, 6), "descriptive": (2, 8), "descriptive_heldout": (2, 8)}
SHORT_NO_TITLE_WORD = 0.85  # at least this share of queries describes the answer without any word of its title
# The sample ships each article's Wikipedia short description; descriptive queries are written without it.
# Short descriptions are formulaic ("City in ..."), so some four-word runs recur by chance; more is copying.
DESCRIPTION_RUN, DESCRIPTION_RUN_SHARE = 4, 0.10


def _words(text):
    return re.findall(r"[a-z0-9]+", text.lower())


@pytest.fixture(scope="module")
def short_sets():
    return {name: load_questions(path) for name, path in SHORT_SETS.items()}


@pytest.fixture(scope="module")
def topics():
    from ingest.sources import sample_path

    return {
        record.get("title") or key: record.get("topic")
        for key, record in json.loads(sample_path().read_text(encoding="utf-8")).items()
    }


@pytest.mark.parametrize("name", SHORT_SETS)
def test_short_queries_each_name_a_distinct_article_of_the_sample(short_sets, leads, name):
    questions = short_sets[name]
    missing = [(q.line, q.title) for q in questions if q.title not in leads]
    assert not missing, f"{name}: titles not in the bundled sample: {missing}"
    twice = [title for title, n in Counter(q.title for q in questions).items() if n > 1]
    assert not twice, f"{name}: articles answering more than one query: {twice}"
    assert len({q.question.lower() for q in questions}) == len(questions), f"{name}: a query appears twice"


def test_the_held_out_sets_are_large():
    assert len(load_questions(HELDOUT_QUESTIONS)) >= 300
    assert len(load_questions(DESCRIPTIVE_HELDOUT)) >= 400


def test_the_question_sets_share_no_answering_article(shipped, short_sets):
    answers = {"sample": {q.title for q in shipped}} | {name: {q.title for q in qs} for name, qs in short_sets.items()}
    names = sorted(answers)
    shared = {
        (a, b): sorted(answers[a] & answers[b])
        for i, a in enumerate(names)
        for b in names[i + 1 :]
        if answers[a] & answers[b]
    }
    assert not shared, f"articles answering questions of two sets: {shared}"


@pytest.mark.parametrize("name", SHORT_SETS)
def test_short_queries_look_typed_into_a_search_box(short_sets, name):
    low, high = SHORT_WORDS[name]
    too_long_or_short = [(q.line, q.question) for q in short_sets[name] if not low <= len(q.question.split()) <= high]
    assert not too_long_or_short, f"{name}: queries outside {low}-{high} words: {too_long_or_short}"
    asking = [(q.line, q.question) for q in short_sets[name] if "?" in q.question]
    assert not asking, f"{name}: queries with a question mark: {asking}"


@pytest.mark.parametrize("name", SHORT_SETS)
def test_short_queries_do_not_spell_out_their_answer(short_sets, name):
    questions = short_sets[name]
    spelled = [(q.line, q.title) for q in questions if len(q.title) > 12 and q.title.lower() in q.question.lower()]
    assert not spelled, f"{name}: queries containing their answer's title: {spelled}"
    described = [q for q in questions if not set(_words(q.title)) & set(_words(q.question))]
    assert len(described) >= SHORT_NO_TITLE_WORD * len(questions), (
        f"{name}: only {len(described)} of {len(questions)} queries share no word with their answer's title"
    )


@pytest.mark.parametrize("name", SHORT_SETS)
def test_short_queries_are_not_copied_from_the_indexed_text(short_sets, leads, name):
    def runs(tokens):
        return {tuple(tokens[i : i + SHORT_COPIED_WORDS]) for i in range(len(tokens) - SHORT_COPIED_WORDS + 1)}

    copied = [(q.line, q.title) for q in short_sets[name] if runs(_words(q.question)) & runs(_words(leads[q.title]))]
    assert not copied, f"{name}: queries sharing {SHORT_COPIED_WORDS}+ consecutive words with their article: {copied}"


@pytest.mark.parametrize("name", SHORT_SETS)
def test_short_queries_spread_over_the_samples_topics(short_sets, topics, name):
    questions = short_sets[name]
    covered = Counter(topics[q.title] for q in questions)
    assert len(covered) >= 10, covered
    assert max(covered.values()) <= len(questions) / 4, covered


@pytest.mark.parametrize("name", DESCRIPTIVE_SETS)
def test_descriptive_queries_are_not_the_samples_own_descriptions(short_sets, name):
    from ingest.sources import sample_path

    described = {
        record.get("title") or key: record.get("description") or ""
        for key, record in json.loads(sample_path().read_text(encoding="utf-8")).items()
    }

    def runs(tokens):
        return {tuple(tokens[i : i + DESCRIPTION_RUN]) for i in range(len(tokens) - DESCRIPTION_RUN + 1)}

    questions = short_sets[name]
    same = [(q.line, q.question) for q in questions if _words(q.question) == _words(described[q.title])]
    assert not same, f"{name}: queries that are their article's shipped description: {same}"
    sharing = [q for q in questions if runs(_words(q.question)) & runs(_words(described[q.title]))]
    assert len(sharing) <= DESCRIPTION_RUN_SHARE * len(questions), (
        f"{name}: {len(sharing)} queries share {DESCRIPTION_RUN}+ consecutive words with the shipped description"
    )


# -- the variants replay -------------------------------------------------------
def test_the_variants_replay_ranks_as_the_store_does(tiny_index, local_embedder):
    """The replica behind `eval --variants` against the real store, on the collection's
    own settings: dense rankings identical, hybrid ones consistent with the store's
    fused scores (a pair the store scores apart comes in the same order; ties are free)."""
    from ingest.store.base import DEFINITION_WEIGHT
    from search import Searcher
    from search.evaluation.variants import Replica, Variant

    settings, questions, _ = tiny_index
    with Searcher.open(settings.store, embedder=local_embedder) as searcher:
        replica = Replica(searcher.store)
        assert len(replica) == searcher.store.count()
        own = Variant("own", searcher.spec.sparse, definition=DEFINITION_WEIGHT if searcher.spec.definition else 0.0)
        for q in questions[:8]:
            vector = local_embedder.embed_queries([q.question])[0]
            dense = [replica.point_ids[r] for r in replica.search(vector, q.question, Variant("d", None), 9)]
            assert dense == [h.point_id for h in searcher.search(q.question, k=9, mode="dense")]
            hits = searcher.store.search(vector, sparse=lexical.query_vector(q.question, searcher.spec.sparse), limit=9)
            # the same limit: a search with definitions reads each ranking as deep as its limit needs
            ranked = [replica.point_ids[r] for r in replica.search(vector, q.question, own, 9)]
            order = {pid: i for i, pid in enumerate(ranked)}
            for a, b in zip(hits, hits[1:]):
                if a.score > b.score + 1e-6:  # b may tie with the replica's ninth: then it is after a
                    assert order[a.id] < order.get(b.id, len(ranked)), (q.question, a.id, b.id)


def test_the_variants_command_scores_every_variant_and_its_dense_row_matches_the_eval(tiny_index, capsys):
    settings, questions, questions_file = tiny_index
    args = [
        "--questions",
        str(questions_file),
        "--qdrant-path",
        settings.store.qdrant_path,
        "--collection",
        settings.store.collection,
        "--device",
        "cpu",
        "--no-progress",
    ]
    assert main(args + ["--mode", "dense", "--json"]) == 0
    dense = json.loads(capsys.readouterr().out)
    assert main(args + ["--variants", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report) == len(default_variants()) and all(set(by_set) == {"questions"} for by_set in report.values())
    replayed = report["dense only"]["questions"]
    assert (replayed["recall@1"], replayed["mrr@10"]) == (dense["recall@1"], dense["mrr@10"])
    default = next(label for label in report if label.startswith("default now"))
    assert report[default]["questions"]["recall@10"] > 0.5
    assert main(args + ["--variants"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| variant | questions R@1 |") and len(table) == 2 + len(default_variants()) + 2
