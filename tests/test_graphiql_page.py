"""The GraphiQL page: served by the hub, asks for the token first, says so in words when its CDN is unreachable."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from schema.app import GRAPHIQL_HTML


class _Page(HTMLParser):
    """The tags of a page, with their attributes and the text inside each element with an id."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: dict[str, str] = {}
        self._open: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        self._in_script = tag == "script"
        if "id" in attrs:
            self._open.append(attrs["id"])
            self.text.setdefault(attrs["id"], "")

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)
        for name in self._open:
            self.text[name] += data


def _page(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


async def test_graphiql_page_in_a_browser_is_the_hubs_own(client):
    response = await client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert response.text == GRAPHIQL_HTML


def test_graphiql_page_needs_no_external_asset_to_show_its_messages():
    page = _page(GRAPHIQL_HTML)
    # no tag loads anything: the CDN's assets are added by the page's own script, which can report failures
    assert [(t, a) for t, a in page.tags if a.get("src") or (a.get("href") or "").startswith(("http", "//"))] == []
    assert "could not be loaded" in page.text["hub-offline"] and "cannot reach" in page.text["hub-offline"]
    assert "Loading GraphiQL's scripts from https://unpkg.com" in page.text["hub-status"]
    assert any(t == "input" and a.get("id") == "hub-token" and a.get("type") == "password" for t, a in page.tags)
    script = "".join(page.scripts)
    assets = re.findall(r'url: "(https://unpkg\.com/[^"]+)",\s*integrity: "(sha384-[^"]+)"', script)
    assert len(assets) == 6, "GraphiQL, its explorer plugin, React and ReactDOM, each pinned with its hash"


# A stand-in for the browser: just the DOM calls the page makes, so its script runs in node.
HARNESS = r"""
const elements = {};
function el(id) {
  return elements[id] || (elements[id] = {id, hidden: id === "hub-offline" || id === "graphiql", textContent: "",
    className: "", value: "", listeners: {}, addEventListener(t, f) { this.listeners[t] = f; }});
}
const appended = [], fetches = [], timers = [];
let fetcherOptions = null, rendered = null;
global.document = {getElementById: el, createElement: (tag) => ({tag}), head: {appendChild: (e) => appended.push(e)}};
global.window = {location: {href: "http://127.0.0.1:8123/graphql?x=1"}};
global.fetch = (url, options) => { fetches.push({url, options}); return Promise.resolve({status: 200}); };
global.setTimeout = (f) => { timers.push(f); return timers.length; };
global.clearTimeout = () => {};
global.GraphiQL = {createFetcher: (o) => { fetcherOptions = o; return () => null; }};
global.React = {createElement: (c, p) => ({c, p})};
global.ReactDOM = {createRoot: () => ({render: (e) => { rendered = e; }})};
global.GraphiQLPluginExplorer = {explorerPlugin: () => ({})};
const flush = () => new Promise((r) => setImmediate(r));
(async () => {
  eval(SCRIPT);
  const scenario = process.argv[process.argv.length - 1];
  if (scenario === "unreachable") {
    await flush(); appended[0].onerror(); await flush();
  } else if (scenario === "silent") {
    timers[0](); await flush();
  } else {
    el("hub-token").value = " Bearer hub_secret ";
    el("hub-token-form").listeners.submit({preventDefault() {}});
    await flush();
    for (let i = 0; i < 20; i++) { for (const a of appended) if (!a.done) { a.done = true; a.onload(); } await flush(); }
  }
  console.log(JSON.stringify({status: el("hub-status").textContent, offlineShown: !el("hub-offline").hidden,
    fetches: fetches.map((f) => ({url: f.url, auth: f.options.headers.Authorization})),
    fetcherOptions, rendered: rendered !== null, loaded: appended.map((a) => a.src || a.href)}));
})();
"""


def _run_page(scenario: str) -> dict:
    script = "".join(_page(GRAPHIQL_HTML).scripts)
    out = subprocess.run(["node", "-e", f"const SCRIPT = {json.dumps(script)};\n{HARNESS}", "--", scenario],
                         capture_output=True, text=True, timeout=30, check=True)
    return json.loads(out.stdout)


needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node runs the page's script")


@needs_node
@pytest.mark.parametrize("scenario", ["unreachable", "silent"])
def test_graphiql_page_without_its_cdn_says_so_in_plain_words(scenario):
    seen = _run_page(scenario)
    assert seen["offlineShown"] and ("could not be loaded" in seen["status"] or "did not arrive" in seen["status"])
    assert "unpkg.com" in seen["status"] and not seen["rendered"]


@needs_node
def test_graphiql_page_asks_for_the_token_before_its_first_request():
    seen = _run_page("online")
    assert seen["fetches"] == [{"url": "http://127.0.0.1:8123/graphql", "auth": "Bearer hub_secret"}]
    assert seen["fetcherOptions"] == {"url": "http://127.0.0.1:8123/graphql",
                                      "headers": {"Authorization": "Bearer hub_secret"}}
    assert seen["rendered"] and not seen["offlineShown"]
    assert len(seen["loaded"]) == 6 and all(u.startswith("https://unpkg.com/") for u in seen["loaded"])
