// The search page: one POST /search per query (hits and the RAG context block), to
// the server that served the page. Text from the index is inserted with textContent
// only, and only http(s) URLs become links. The token, when the server asks for one,
// lives in this tab's sessionStorage; the page itself never contains it.
"use strict";

const TOKEN_KEY = "wiki-search-token";
const CONTEXT_CHARS = 4000;
const SNIPPET_CHARS = 320;

const byId = (id) => document.getElementById(id);

function safeLink(text) {
  try {
    const url = new URL(text);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch (error) {
    return null;
  }
}

function snippet(text) {
  const flat = text.replace(/\s+/g, " ").trim();
  if (flat.length <= SNIPPET_CHARS) return flat;
  const cut = flat.slice(0, SNIPPET_CHARS);
  const space = cut.lastIndexOf(" ");
  return (space > SNIPPET_CHARS / 2 ? cut.slice(0, space) : cut) + " …";
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function showStatus(text, isError) {
  const status = byId("status");
  status.textContent = text;
  status.classList.toggle("error", Boolean(isError));
}

function showTokenField() {
  byId("token-row").hidden = false;
}

async function describeServer() {
  try {
    const response = await fetch("health", { headers: { Accept: "application/json" } });
    const health = await response.json();
    byId("about").textContent = `Searching ${health.collection} (${health.model}, ${health.dimension} dimensions)` +
      (health.status === "ok" ? "." : `: ${health.error || "the service is unavailable"}.`);
    if (health.auth) showTokenField();
  } catch (error) {
    byId("about").textContent = "The server did not say what it searches.";
  }
}

function renderHit(hit) {
  const item = element("li", "hit");
  const heading = element("div", "hit-heading");
  const href = safeLink(hit.url);
  const title = element(href ? "a" : "span", "hit-title", hit.title || "(untitled)");
  if (href) {
    title.href = href;
    title.rel = "noopener noreferrer";
    title.target = "_blank";
  }
  // The score ranks the hits: the cosine in dense mode, the fused reciprocal-rank score in
  // hybrid mode, where the passage's cosine is shown beside it (it need not follow the order).
  const hybrid = Math.abs(hit.score - hit.similarity) > 1e-6;
  const score = element("span", "hit-score", hybrid
    ? `score ${hit.score.toFixed(3)} · cosine ${hit.similarity.toFixed(3)}` : `cosine ${hit.similarity.toFixed(3)}`);
  if (hybrid) {
    score.title = "ranked by the fused score of the vector and BM25 rankings; the cosine is the vector similarity alone";
  }
  heading.append(title, score);
  item.append(heading, element("p", "hit-snippet", snippet(hit.text)));
  const source = element("p", "hit-url", hit.url);
  item.append(source);
  return item;
}

function render(answer) {
  const hits = byId("hits");
  hits.replaceChildren(...answer.hits.map(renderHit));
  byId("results").hidden = false;
  const context = answer.context;
  byId("context").textContent = context ? context.text : "";
  byId("context-section").hidden = !(context && context.text);
  const count = answer.hits.length;
  showStatus(`${count} hit${count === 1 ? "" : "s"} in ${answer.took_ms} ms (${answer.mode}).`, false);
}

async function search(event) {
  event.preventDefault();
  const query = byId("query").value;
  const body = { query, k: Number(byId("k").value) || 5, context_chars: CONTEXT_CHARS };
  const mode = byId("mode").value;
  if (mode) body.mode = mode;
  const headers = { "Content-Type": "application/json", Accept: "application/json" };
  const token = byId("token").value.trim();
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    headers.Authorization = `Bearer ${token}`;
  } else {
    sessionStorage.removeItem(TOKEN_KEY);
  }
  byId("submit").disabled = true;
  showStatus("Searching…", false);
  try {
    const response = await fetch("search", { method: "POST", headers, body: JSON.stringify(body) });
    const answer = await response.json().catch(() => null);
    if (!response.ok) {
      if (response.status === 401) showTokenField();
      showStatus(`Error ${response.status}: ${answer && answer.error ? answer.error : response.statusText}`, true);
      return;
    }
    render(answer);
  } catch (error) {
    showStatus(`The server did not answer: ${error.message}`, true);
  } finally {
    byId("submit").disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) {
    byId("token").value = saved;
    showTokenField();
  }
  byId("search-form").addEventListener("submit", search);
  describeServer();
});
