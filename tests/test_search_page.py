"""The search page at `/` (search/static/) in a real browser: Debian's Chromium
(/usr/bin/chromium, never one `playwright install` downloads) driven by Playwright,
against a real uvicorn server on loopback over a small real index (the bundled
model, the embedded store). Every request the page makes is intercepted: one that
leaves the server that served it fails the test.

SEARCH_PAGE_SCREENSHOT=/tmp/search_page.png saves a screenshot of the page with
its hits and context block."""

from __future__ import annotations

import os
import types
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, sync_playwright

from ingest.chunking import ChunkingSettings
from ingest.jobs import run_ingest
from ingest.settings import IngestSettings, StoreSettings
from search import Searcher
from search.api import Hit
from search.server import make_app
from search.serving import server_url
from tests.http_serving import serving

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
]
TOKEN = "page-token-0123456789abcdef"
HAL_QUERY = "the space film in which the computer HAL 9000 turns on its crew"
HAL_TITLE = "2001: A Space Odyssey"
HAL_URL = "https://en.wikipedia.org/wiki/2001:_A_Space_Odyssey"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Chromium is not installed at /usr/bin/chromium: apt-get install -y chromium "
    "(the test drives Debian's Chromium, never a downloaded one)",
)


# -- a server and a browser ------------------------------------------------------------------
@pytest.fixture(scope="module")
def searcher(tmp_path_factory, local_embedder):
    tmp_path = tmp_path_factory.mktemp("page")
    settings = IngestSettings(
        source="sample",
        limit=12,
        progress=False,
        dead_letter=str(tmp_path / "dead_letter.jsonl"),
        chunking=ChunkingSettings(max_chars=300),
        store=StoreSettings(qdrant_path=str(tmp_path / "qdrant"), collection="wiki"),
    )
    run_ingest(settings, embedder=local_embedder)
    with Searcher.open(settings.store, embedder=local_embedder) as searcher:
        yield searcher


@pytest.fixture(scope="module")
def url(searcher):
    """The page's URL on a real server over the real index, with a token."""
    server, stop = serving(make_app(searcher, token=TOKEN))
    yield server_url(server) + "/"
    stop()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Visit(types.SimpleNamespace):
    page: Page
    requests: list[str]  # every URL the page asked for
    blocked: list[str]  # those that left the server, refused


@pytest.fixture()
def visit(browser):
    """A fresh browser context whose requests are all logged, and refused unless
    they go to the server the page came from."""
    context = browser.new_context(viewport={"width": 1100, "height": 1400})
    visit = Visit(page=context.new_page(), requests=[], blocked=[])
    home: list[tuple[str, int | None]] = []

    def route(route):
        parts = urlsplit(route.request.url)
        visit.requests.append(route.request.url)
        if not home:
            home.append((parts.hostname, parts.port))
        if parts.scheme == "http" and (parts.hostname, parts.port) == home[0] and parts.hostname == "127.0.0.1":
            route.continue_()
        else:
            visit.blocked.append(route.request.url)
            route.abort()

    context.route("**/*", route)
    yield visit
    context.close()


def search(page: Page, query: str, *, k: int = 3, token: str | None = None) -> None:
    if token is not None:
        page.fill("#token", token)
    page.fill("#query", query)
    page.fill("#k", str(k))
    page.click("#submit")
    page.wait_for_function(
        "() => !document.getElementById('submit').disabled"
        " && document.getElementById('status').textContent !== 'Searching…'"
    )


# -- the page ---------------------------------------------------------------------------------
def test_the_page_searches_shows_ranked_hits_and_the_context_and_stays_on_loopback(url, visit):
    page = visit.page
    page.goto(url)
    assert TOKEN not in page.content()  # the page never carries the token
    page.wait_for_selector("#token-row:not([hidden])")  # /health says this server asks for one
    assert "Searching wiki (sentence-transformers/all-MiniLM-L6-v2" in page.text_content("#about")

    search(page, HAL_QUERY, k=3, token=TOKEN)
    assert page.text_content("#status").startswith("3 hits in ")
    hits = page.locator("#hits > li")
    assert hits.count() == 3
    first = hits.nth(0)
    link = first.locator("a.hit-title")
    assert link.text_content() == HAL_TITLE and link.get_attribute("href") == HAL_URL
    assert link.get_attribute("rel") == "noopener noreferrer"
    snippets = page.locator(".hit-snippet").all_text_contents()
    assert len(snippets) == 3 and all(len(s) > 20 for s in snippets) and "HAL" in snippets[0]
    labels = page.locator(".hit-score").all_text_contents()  # hybrid: "score 0.033 · cosine 0.521"
    scores = [float(label.split(" · ")[0].removeprefix("score ")) for label in labels]
    assert scores == sorted(scores, reverse=True) and all(" · cosine 0." in label for label in labels), labels
    context = page.text_content("#context")
    assert page.is_visible("#context-section") and context.startswith(f"[1] {HAL_TITLE} — {HAL_URL}\n")

    assert page.evaluate("() => sessionStorage.getItem('wiki-search-token')") == TOKEN  # this tab only
    assert page.evaluate("() => localStorage.length") == 0
    page.reload()
    assert page.input_value("#token") == TOKEN and page.is_visible("#token-row")

    page.select_option("#mode", "dense")
    search(page, "accordion", k=2)
    assert page.text_content("#status").endswith("(dense).")
    if os.environ.get("SEARCH_PAGE_SCREENSHOT"):
        page.select_option("#mode", "")  # the collection's default: hybrid
        search(page, HAL_QUERY, k=3)
        page.screenshot(path=os.environ["SEARCH_PAGE_SCREENSHOT"], full_page=True)

    assert visit.blocked == []
    assert visit.requests and all(r.startswith(url) for r in visit.requests)  # loopback, this server, only
    paths = {urlsplit(r).path for r in visit.requests}
    assert {"/", "/static/search.js", "/static/search.css", "/health", "/search"} <= paths


def test_a_wrong_token_shows_the_apis_error(url, visit):
    page = visit.page
    page.goto(url)
    search(page, HAL_QUERY, token="not-the-token")
    assert page.text_content("#status") == "Error 401: the bearer token is wrong"
    assert page.is_hidden("#results") and visit.blocked == []


class HostileSearcher:
    """Hits whose title is markup and whose url is a script: the page must show
    them as text, link nothing, and load nothing."""

    name, default_mode = "hostile", "dense"
    spec = types.SimpleNamespace(model=types.SimpleNamespace(name="fake/model"), dimension=3)
    store = types.SimpleNamespace(collection="hostile_1", exists=lambda: True)
    embedder = types.SimpleNamespace(embed_queries=lambda texts: [[0.0, 0.0, 1.0]])

    def search(self, query, k=5, **options):
        def hit(rank, title, url, text):
            return Hit(
                rank=rank,
                score=1.0 / rank,
                similarity=0.5,
                article_id=str(rank),
                title=title,
                url=url,
                text=text,
                chunk_index=0,
                start=0,
                end=len(text),
                point_id=f"p{rank}",
            )

        return [
            hit(
                1,
                '<img src="http://203.0.113.9/x.png" onerror="document.title=\'owned\'">',
                "javascript:alert(1)",
                "<script>document.title='owned'</script> text",
            ),
            hit(2, "Plain", "http://example.org/plain", "<b>not bold</b>"),
        ]


def test_hostile_hits_are_shown_as_text_and_only_http_links_are_links(visit):
    server, stop = serving(make_app(HostileSearcher(), token=None))
    try:
        page = visit.page
        page.goto(server_url(server) + "/")
        assert page.is_hidden("#token-row")  # an open server asks for no token
        search(page, "anything", k=2)
        titles = page.locator(".hit-title")
        assert titles.nth(0).evaluate("node => node.tagName") == "SPAN"  # javascript: is no link
        assert titles.nth(0).text_content().startswith("<img src=")
        assert titles.nth(1).get_attribute("href") == "http://example.org/plain"
        assert page.locator("#hits img, #hits script, #hits b").count() == 0
        assert page.text_content(".hit-snippet") == "<script>document.title='owned'</script> text"
        assert page.title() == "Wikipedia search"
        assert visit.blocked == []  # the image in the title was never fetched
    finally:
        stop()
