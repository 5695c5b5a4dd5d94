"""The hub's web security in headless Chromium (Debian `chromium`, driven by Playwright, JavaScript on): an
uploaded HTML or SVG file opened by a logged-in user cannot run script in the hub's origin (downloaded as an
attachment; shown inline, as text; served as HTML, still sandboxed), a form on another origin (another port
of the same host, so the same *site*: SameSite cookies are sent) cannot act through the user's session, and
``/docs`` works with every request to another host blocked."""

from __future__ import annotations

import http.server
import threading

import pytest
from huggingface_hub import CommitOperationAdd

try:
    from test_ui_browser import CHROMIUM, LAUNCH_ARGS
except ImportError:  # tests/ as a package
    from tests.server.test_ui_browser import CHROMIUM, LAUNCH_ARGS
from pathlib import Path

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).is_file(), reason=f"no Chromium at {CHROMIUM} (scripts/services.sh)"
    ),
]

MARK = "xss-ran"
PAYLOADS = {
    "evil.html": (
        f"<html><body><script>document.title='pwned';fetch('/{MARK}-html?c='+document.cookie)</script>"
        f"<img src=x onerror=\"fetch('/{MARK}-img')\"></body></html>"
    ).encode(),
    "evil.svg": (
        f'<svg xmlns="http://www.w3.org/2000/svg" onload="fetch(\'/{MARK}-svg-onload\')">'
        f"<script>document.title='pwned';fetch('/{MARK}-svg')</script></svg>"
    ).encode(),
}


@pytest.fixture(scope="module")
def browser(live_hub):
    sync_api = pytest.importorskip("playwright.sync_api")
    api = live_hub.api("alice")
    api.create_repo("alice/active-content")
    api.create_commit(
        "alice/active-content",
        [CommitOperationAdd(path_in_repo=p, path_or_fileobj=d) for p, d in PAYLOADS.items()],
        commit_message="html and svg with script",
    )
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        yield b
        b.close()


def logged_in_context(browser, live_hub, who: str = "alice"):
    """A browser context (JavaScript on) logged in through the login form; requests are recorded."""
    context = browser.new_context(base_url=live_hub.url, accept_downloads=True)
    context.seen = []
    context.on("request", lambda r: context.seen.append(r.url))
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    pg.goto("/login")
    pg.fill('input[name="token"]', live_hub.tokens[who])
    pg.click("main form button[type=submit]")
    assert f"{who} · log out" in pg.locator("header").inner_text()
    return context, pg


def _script_ran(context, pg) -> bool:
    return pg.title() == "pwned" or any(MARK in url for url in context.seen)


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_uploaded_html_and_svg_cannot_run_script_in_the_hubs_origin(browser, live_hub, name):
    from playwright.sync_api import Error as PlaywrightError

    context, pg = logged_in_context(browser, live_hub)
    url = f"{live_hub.url}/alice/active-content/resolve/main/{name}"
    try:
        # 1. as the hub sends it: an attachment, saved, never shown
        with pg.expect_download() as download:
            try:
                pg.goto(url)
            except PlaywrightError:  # "Download is starting": the navigation becomes a download
                pass
        assert download.value.suggested_filename == name
        assert open(download.value.path(), "rb").read() == PAYLOADS[name]
        pg.goto("/adapters")  # give a script that might have run in the page time to call home
        assert not _script_ran(context, pg)

        # 2. a browser (or proxy) that ignores Content-Disposition shows it inline: as plain text
        def inline(route, keep_type: bool):
            response = route.fetch()
            headers = {k: v for k, v in response.headers.items() if k.lower() != "content-disposition"}
            if not keep_type:
                headers["content-type"] = "text/html" if name.endswith(".html") else "image/svg+xml"
            route.fulfill(response=response, headers=headers)

        pg.route(url, lambda route: inline(route, keep_type=True))
        pg.goto(url)
        assert pg.evaluate("document.contentType") == "text/plain"
        assert "<script>" in pg.locator("body").inner_text()  # the source, as text
        pg.goto("/adapters")
        assert not _script_ran(context, pg)

        # 3. even served as HTML/SVG, the sandbox CSP gives it an opaque origin without script
        pg.unroute(url)
        pg.route(url, lambda route: inline(route, keep_type=False))
        pg.goto(url)
        assert pg.evaluate("document.contentType") in ("text/html", "image/svg+xml")
        pg.wait_for_timeout(300)
        assert not _script_ran(context, pg)
        assert pg.evaluate("origin") == "null"  # sandboxed: not the hub's origin, no cookie, no pages
    finally:
        context.close()


class _AttackerPages(http.server.BaseHTTPRequestHandler):
    """Another origin on the same host (another port): pages whose forms post to the hub."""

    hub_url = ""

    def do_GET(self):  # noqa: N802
        forms = {
            "/token": (
                "/settings/tokens",
                '<input name="action" value="create"><input name="name" value="stolen">'
                '<input name="scope" value="write">',
            ),
            "/logout": ("/logout", ""),
            "/upload": ("/upload", '<input name="repo_id" value="alice/planted">'),
        }
        action, fields = forms.get(self.path, ("/", ""))
        body = (
            f'<!doctype html><form method="post" action="{self.hub_url}{action}" '
            f'enctype="multipart/form-data">{fields}<button id="go">go</button></form>'
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def attacker(live_hub):
    handler = type("Pages", (_AttackerPages,), {"hub_url": live_hub.url})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _count_tokens(live_hub, name: str) -> int:
    from sqlalchemy import func, select

    from adapterhub.server.models import Token

    with live_hub.hub.db.session() as s:
        return s.scalar(select(func.count()).select_from(Token).where(Token.name == name))


def test_a_form_on_another_origin_cannot_act_for_the_user(browser, live_hub, attacker):
    from adapterhub.server.models import Repo

    context, pg = logged_in_context(browser, live_hub)
    repos_before = live_hub.count(Repo)
    try:
        for page in ("/token", "/upload", "/logout"):
            pg.goto(attacker + page)
            with pg.expect_navigation() as nav:
                pg.click("#go")
            assert nav.value.status == 403, page
            assert "Refused" in pg.locator("h1").inner_text() and "not from this hub" in pg.content()
        assert _count_tokens(live_hub, "stolen") == 0 and live_hub.count(Repo) == repos_before
        pg.goto("/upload")
        assert "alice · log out" in pg.locator("header").inner_text()  # still logged in
        # the same action from the hub's own page works
        pg.goto("/settings/tokens")
        pg.fill('#new-token-form input[name="name"]', "made-in-browser")
        pg.click("#new-token-form button[type=submit]")
        assert pg.locator("#new-token pre").inner_text().startswith("ah_")
        assert _count_tokens(live_hub, "made-in-browser") == 1
    finally:
        context.close()


def test_api_docs_render_offline(browser, live_hub):
    context = browser.new_context(base_url=live_hub.url)
    blocked, violations = [], []

    def only_the_hub(route):
        if route.request.url.startswith(live_hub.url):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_hub)
    pg = context.new_page()
    pg.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    try:
        pg.goto("/docs")
        pg.wait_for_selector(".opblock", timeout=20_000)
        assert pg.locator(".opblock").count() >= 10
        assert "/api/adapters/resolve" in pg.locator("#swagger-ui").inner_text()
        assert blocked == [] and violations == []
    finally:
        context.close()
