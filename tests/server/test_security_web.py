"""The hub's web security against a live server (issue: harden the hub), over plain HTTP: raw files never run in
the hub's origin, every answer carries the security headers, safe ``next=`` redirects, CSRF refusals, login
throttling, token management (API and page), tokens kept out of the access log, HF-style repository and commit
URLs, private downloads with the login cookie, and an offline ``/docs``. The browser half (an uploaded
HTML/SVG opened in Chromium, a cross-origin form post) is in ``test_security_browser.py``."""

from __future__ import annotations

import contextlib
import logging
import re

import httpx
import pytest
from fastapi.testclient import TestClient
from huggingface_hub import CommitOperationAdd

from adapterhub.server.auth import LoginThrottle
from adapterhub.server.models import Token
from server_support import csrf_token, snapshot  # tests/server is on sys.path (conftest.py)

ACTIVE = {
    "evil.html": b"<html><body><script>document.title='pwned'</script></body></html>",
    "evil.svg": b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script></svg>',
    "evil.js": b"alert(document.cookie)",
    "evil.xml": b'<?xml version="1.0"?><x:script xmlns:x="http://www.w3.org/1999/xhtml">alert(1)</x:script>',
    "evil.xhtml": b'<html xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></html>',
    "page.htm": b"<script>alert(1)</script>",
    "style.css": b"body{background:url(javascript:alert(1))}",
    "notes.txt": b"<script>alert(1)</script>",
    "data.json": b'{"a": "<script>alert(1)</script>"}',
    "\u00e9t\u00e9 ;q'.html": b"<script>alert(1)</script>",  # (a '"' is refused: Windows cannot hold it)
}


@pytest.fixture(scope="module")
def files_repo(live_hub):
    api = live_hub.api("alice")
    api.create_repo("alice/raw-files")
    info = api.create_commit(
        "alice/raw-files",
        [CommitOperationAdd(path_in_repo=p, path_or_fileobj=d) for p, d in ACTIVE.items()],
        commit_message="active content",
    )
    return info.oid


def _check_raw(r: httpx.Response, path: str) -> None:
    assert r.status_code in (200, 206), (path, r.status_code, r.text[:200])
    ctype = r.headers["content-type"].split(";")[0].strip()
    assert ctype in ("text/plain", "application/json", "application/octet-stream"), (path, ctype)
    assert r.headers["content-disposition"].startswith("attachment;"), path
    assert r.headers["x-content-type-options"] == "nosniff"
    csp = r.headers["content-security-policy"]
    assert "sandbox" in csp and "default-src 'none'" in csp and "script-src" not in csp


def test_raw_files_never_render_as_active_content(live_hub, files_repo):
    with httpx.Client(base_url=live_hub.url) as c:
        for path, data in ACTIVE.items():
            url = f"/alice/raw-files/resolve/main/{httpx.URL('/' + path).raw_path.decode()[1:]}"
            r = c.get(url)  # the plain-ASGI fast path
            _check_raw(r, path)
            assert r.content == data
            _check_raw(c.get(url, headers={"Range": "bytes=0-3"}), path)  # the routed answer
            _check_raw(c.head(url), path)
            r = c.get(url, headers={"Authorization": f"Bearer {live_hub.tokens['alice']}"})
            _check_raw(r, path)
    with httpx.Client(base_url=live_hub.url) as c:
        r = c.get("/alice/raw-files/resolve/main/%C3%A9t%C3%A9%20%3Bq%27.html")
        # the quoted fallback name cannot break out of the header; the UTF-8 name is percent-encoded
        assert r.headers["content-disposition"] == (
            "attachment; filename=\"_t_ _q_.html\"; filename*=UTF-8''%C3%A9t%C3%A9%20%3Bq%27.html"
        )


def test_huggingface_hub_still_downloads_them(live_hub, files_repo, tmp_path):
    from huggingface_hub import hf_hub_download

    for path in ("evil.html", "data.json"):
        got = hf_hub_download(
            "alice/raw-files", path, endpoint=live_hub.url, token=False, cache_dir=tmp_path / "c"
        )
        assert open(got, "rb").read() == ACTIVE[path]


def test_every_answer_carries_the_security_headers(live_hub, files_repo):
    with httpx.Client(base_url=live_hub.url) as c:
        pages = ["/", "/adapters?q=x", "/tasks", "/login", "/upload", "/adapters/no/such", "/models"]
        for path in pages:
            r = c.get(path)
            assert r.headers["content-type"].startswith("text/html"), path
            csp = r.headers["content-security-policy"]
            assert "default-src 'none'" in csp and "script-src" not in csp, (path, csp)
            assert "frame-ancestors 'none'" in csp and "form-action 'self'" in csp
            assert r.headers["x-frame-options"] == "DENY"
            assert r.headers["referrer-policy"] == "same-origin"
            assert r.headers["x-content-type-options"] == "nosniff"
        for path in ["/api/models", "/api/adapters", "/no/such/resolve/main/x", "/openapi.json"]:
            r = c.get(path)
            assert r.headers["x-content-type-options"] == "nosniff", path
            assert "default-src 'none'" in r.headers["content-security-policy"], path


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "/%2F%2Fevil.example",
        "/%5Cevil.example",
        "/x\r\nSet-Cookie: a=b",
        " //evil.example",
        "http:evil.example",
    ],
)
def test_login_next_never_leaves_the_hub(live_hub, target):
    with httpx.Client(base_url=live_hub.url) as c:
        page = c.get("/login", params={"next": target}).text
        assert 'name="next" value="/upload"' in page
        form = {"token": live_hub.tokens["alice"], "next": target, "csrf_token": csrf_token(c)}
        r = c.post("/login", data=form, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/upload"


def test_login_next_on_the_hub_is_kept(live_hub):
    with httpx.Client(base_url=live_hub.url) as c:
        assert 'value="/adapters?q=x&amp;page=2"' in c.get("/login?next=/adapters%3Fq%3Dx%26page%3D2").text
        form = {"token": live_hub.tokens["alice"], "next": "/adapters?q=x", "csrf_token": csrf_token(c)}
        r = c.post("/login", data=form, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/adapters?q=x"


def _tokens_named(live_hub, name: str) -> int:
    from sqlalchemy import func, select

    with live_hub.hub.db.session() as s:
        return s.scalar(select(func.count()).select_from(Token).where(Token.name == name))


@contextlib.contextmanager
def _logged_in(live_hub, who: str = "alice"):
    with httpx.Client(base_url=live_hub.url, follow_redirects=False) as c:
        r = c.post("/login", data={"token": live_hub.tokens[who], "csrf_token": csrf_token(c)})
        assert r.status_code == 303, r.text
        yield c


def test_forms_refuse_posts_without_a_valid_token_or_from_another_origin(live_hub):
    from adapterhub.server.models import Repo

    with _logged_in(live_hub) as c:
        good = csrf_token(c, "/settings/tokens")
        create = {"action": "create", "name": "csrf-probe", "scope": "write"}
        repos_before = live_hub.count(Repo)
        refused = [
            c.post("/settings/tokens", data=create),  # no token
            c.post("/settings/tokens", data={**create, "csrf_token": "0" * 64}),  # a wrong one
            c.post("/settings/tokens", data={**create, "csrf_token": good}, headers={"Origin": "null"}),
            c.post(  # another port of the same host: same site, another origin
                "/settings/tokens",
                data={**create, "csrf_token": good},
                headers={"Origin": "http://127.0.0.1:1"},
            ),
            c.post(
                "/settings/tokens",
                data={**create, "csrf_token": good},
                headers={"Referer": "http://evil.example/page"},
            ),
            c.post("/upload", data={"repo_id": "alice/csrf-upload"}, files=[("files", ("a.txt", b"x"))]),
            c.post("/logout"),
        ]
        assert [r.status_code for r in refused] == [403] * len(refused)
        assert all("Refused" in r.text for r in refused)
        assert _tokens_named(live_hub, "csrf-probe") == 0 and live_hub.count(Repo) == repos_before
        assert "alice · log out" in c.get("/upload").text  # the refused logout kept the session
        # a cookie of another browser with this browser's token does not pass either
        with httpx.Client(base_url=live_hub.url) as other:
            csrf_token(other)
            other.cookies.set("ah_token", live_hub.tokens["alice"])
            assert other.post("/settings/tokens", data={**create, "csrf_token": good}).status_code == 403
        # the same post from the hub's own page, with its token, goes through
        r = c.post("/settings/tokens", data={**create, "csrf_token": good}, headers={"Origin": live_hub.url})
        assert r.status_code == 201 and _tokens_named(live_hub, "csrf-probe") == 1


def test_failed_logins_are_throttled(live_hub):
    hub = live_hub.hub
    saved, hub.login_throttle = hub.login_throttle, LoginThrottle(limit=3, window=600)
    try:
        with httpx.Client(base_url=live_hub.url) as c:
            for _ in range(3):
                r = c.post("/login", data={"token": "ah_guess", "csrf_token": csrf_token(c)})
                assert r.status_code == 401
            r = c.post("/login", data={"token": live_hub.tokens["alice"], "csrf_token": csrf_token(c)})
            assert r.status_code == 429 and "Too many failed logins" in r.text
            assert 1 <= int(r.headers["retry-after"]) <= 601  # until the first failure is 600 s old
            assert "ah_token" not in r.headers.get("set-cookie", "")
            # a token pasted into the upload form is a login too: refused while throttled
            form = {"repo_id": "alice/throttled", "token": live_hub.tokens["alice"]}
            form["csrf_token"] = csrf_token(c, "/upload")
            r = c.post("/upload", data=form, files=[("files", ("a.txt", b"x"))])
            assert r.status_code == 429 and "Too many failed logins" in r.text
        hub.login_throttle = LoginThrottle(limit=2, window=600)
        with httpx.Client(base_url=live_hub.url) as c:
            form = {"repo_id": "alice/throttled", "token": "ah_guess"}
            for status in (401, 401, 429):
                form["csrf_token"] = csrf_token(c, "/upload")
                r = c.post("/upload", data=form, files=[("files", ("a.txt", b"x"))])
                assert r.status_code == status
            assert c.post("/login", data={"token": "ah_x", "csrf_token": csrf_token(c)}).status_code == 429
    finally:
        hub.login_throttle = saved


def test_login_throttle_window_and_bound():
    t = LoginThrottle(limit=2, window=600, max_clients=10)
    t.failed("a")
    assert t.retry_after("a") == 0
    t.failed("a")
    assert t.retry_after("a") >= 1 and t.retry_after("b") == 0
    t.succeeded("a")
    assert t.retry_after("a") == 0
    for i in range(50):
        t.failed(f"c{i}")
    assert len(t._failures) <= 10
    expired = LoginThrottle(limit=1, window=600)
    expired.failed("a")
    assert expired.retry_after("a") > 0
    expired._failures["a"][0] -= 601  # the failure is now older than the window: it no longer counts
    assert expired.retry_after("a") == 0 and "a" not in expired._failures


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_token_api_list_create_revoke(live_hub):
    from adapterhub.server import auth

    with live_hub.hub.db.session() as s:
        from sqlalchemy import select

        from adapterhub.server.models import Account

        carol = auth.get_or_create_user(s, "carol")
        write = auth.create_token(s, carol, "write", name="carol-main")
        read = auth.create_token(s, carol, "read", name="carol-read")
        bob_id = s.scalar(select(Account.id).where(Account.name == "bob"))
    with httpx.Client(base_url=live_hub.url) as c:
        listed = c.get("/api/tokens", headers=_bearer(read)).json()
        assert [(t["name"], t["scope"], t["revoked"], t["current"]) for t in listed] == [
            ("carol-main", "write", False, False),
            ("carol-read", "read", False, True),
        ]
        assert all("token" not in t and "hash" not in str(t) for t in listed)
        r = c.post("/api/tokens", json={"name": "x", "scope": "write"}, headers=_bearer(read))
        assert r.status_code == 403 and "read-only" in r.json()["error"]
        r = c.post("/api/tokens", json={"name": "ci", "scope": "read"}, headers=_bearer(write))
        assert r.status_code == 201
        new = r.json()
        assert new["token"].startswith("ah_") and new["scope"] == "read" and new["name"] == "ci"
        assert c.get("/api/whoami-v2", headers=_bearer(new["token"])).json()["name"] == "carol"
        assert c.post("/api/tokens", json={"scope": "admin"}, headers=_bearer(write)).status_code == 422
        assert c.get("/api/tokens").status_code == 401
        # revoking: a write token revokes any of the account's tokens; the token stops working at once
        r = c.delete(f"/api/tokens/{new['id']}", headers=_bearer(write))
        assert r.status_code == 200 and r.json()["revoked"] is True
        r = c.get("/api/whoami-v2", headers=_bearer(new["token"]))
        assert r.status_code == 401 and "revoked" in r.json()["error"]
        # someone else's token is not found; a read token may only revoke itself
        bob_token_ids = [
            t["id"] for t in c.get("/api/tokens", headers=_bearer(live_hub.tokens["bob"])).json()
        ]
        assert c.delete(f"/api/tokens/{bob_token_ids[0]}", headers=_bearer(write)).status_code == 404
        main_id = listed[0]["id"]
        assert c.delete(f"/api/tokens/{main_id}", headers=_bearer(read)).status_code == 403
        for bad in ("0", "-1", "9223372036854775808", "9" * 30):
            assert c.delete(f"/api/tokens/{bad}", headers=_bearer(write)).status_code == 404, bad
        read_id = listed[1]["id"]
        assert c.delete(f"/api/tokens/{read_id}", headers=_bearer(read)).status_code == 200
        assert c.get("/api/tokens", headers=_bearer(read)).status_code == 401
        # the login cookie never authenticates the API's writes
        c.cookies.set("ah_token", write)
        assert c.delete(f"/api/tokens/{main_id}").status_code == 401
        assert c.post("/api/tokens", json={"name": "y"}).status_code == 401
        assert bob_id is not None


def test_tokens_page_creates_and_revokes(live_hub):
    with _logged_in(live_hub) as c:
        page = c.get("/settings/tokens")
        assert page.status_code == 200 and "(this session)" in page.text
        tok = csrf_token(c, "/settings/tokens")
        r = c.post("/settings/tokens", data={"action": "create", "name": "laptop", "scope": "read",
                                              "csrf_token": tok})  # fmt: skip
        assert r.status_code == 201
        new = re.search(r"<pre><code>(ah_[^<]+)</code></pre>", r.text).group(1)
        assert httpx.get(f"{live_hub.url}/api/whoami-v2", headers=_bearer(new)).json()["name"] == "alice"
        assert new not in c.get("/settings/tokens").text  # shown once
        token_id = re.search(r'<tr data-token-id="(\d+)">\s*<td>laptop', r.text).group(1)
        r = c.post("/settings/tokens", data={"action": "revoke", "id": token_id, "csrf_token": tok})
        assert r.status_code == 200 and "revoked" in r.text
        for bad in ("9" * 30, "x", ""):
            r = c.post("/settings/tokens", data={"action": "revoke", "id": bad, "csrf_token": tok})
            assert r.status_code in (400, 404) and 'id="tokens-error"' in r.text, bad
        assert httpx.get(f"{live_hub.url}/api/whoami-v2", headers=_bearer(new)).status_code == 401
    with httpx.Client(base_url=live_hub.url) as anon:
        r = anon.get("/settings/tokens", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login?next=/settings/tokens"


def test_revoking_the_session_token_logs_the_browser_out(live_hub):
    from adapterhub.server import auth

    with live_hub.hub.db.session() as s:
        from sqlalchemy import select

        from adapterhub.server.models import Account

        alice = s.scalar(select(Account).where(Account.name == "alice"))
        live_hub.tokens["alice-web"] = auth.create_token(s, alice, "write", name="web-session")
    with _logged_in(live_hub, "alice-web") as c:
        own = re.search(r'<tr data-token-id="(\d+)">\s*<td>web-session', c.get("/settings/tokens").text)
        tok = csrf_token(c, "/settings/tokens")
        r = c.post("/settings/tokens", data={"action": "revoke", "id": own.group(1), "csrf_token": tok})
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
        assert "Log in" in c.get("/upload").text and "log out" not in c.get("/upload").text


def test_tokens_in_a_query_string_stay_out_of_the_access_log(tmp_path, caplog):
    from adapterhub.server.app import ACCESS_LOG, create_app
    from adapterhub.server.hub import Hub
    from adapterhub.server.settings import Settings

    hub = Hub(Settings(data_dir=tmp_path / "hub"))
    app = create_app(hub=hub)
    app.access_log = True
    secret = "ah_" + "s3cr3tT0kenValue" * 2
    try:
        with TestClient(app) as client, caplog.at_level(logging.INFO, logger=ACCESS_LOG.name):
            client.get(f"/api/models?token={secret}&search=x")
            client.get(f"/api/models?search={secret}")
            client.get("/api/models?access_token=abc&Authorization=zzz")
    finally:
        hub.close()
    lines = [r.getMessage() for r in caplog.records if r.name == ACCESS_LOG.name]
    assert len(lines) == 3 and not any(secret in line or "s3cr3t" in line for line in lines)
    assert "token=REDACTED&search=x" in lines[0] and "search=ah_REDACTED" in lines[1]
    assert "access_token=REDACTED" in lines[2]


def test_hf_style_repo_and_commit_urls_lead_to_the_adapter_page(live_hub, files_repo):
    api = live_hub.api("alice")
    info = api.create_commit(
        "alice/raw-files",
        [CommitOperationAdd(path_in_repo="more.txt", path_or_fileobj=b"more")],
        commit_message="second commit",
    )
    assert info.commit_url == f"{live_hub.url}/alice/raw-files/commit/{info.oid}"
    with httpx.Client(follow_redirects=True) as c:
        r = c.get(info.commit_url)
        assert r.status_code == 200 and r.url.path == "/adapters/alice/raw-files"
        assert r.url.params["rev"] == info.oid and info.oid in r.text and "more.txt" in r.text
        old = c.get(f"{live_hub.url}/alice/raw-files/commit/{files_repo}")
        assert old.status_code == 200 and "more.txt" not in old.text  # the page at that commit
        r = c.get(f"{live_hub.url}/alice/raw-files")
        assert r.status_code == 200 and r.url.path == "/adapters/alice/raw-files"
        assert c.get(f"{live_hub.url}/alice/raw-files/tree/main").status_code == 200
        r = c.get(f"{live_hub.url}/alice/raw-files/blob/main/data.json")
        assert r.status_code == 200 and r.url.path == "/adapters/alice/raw-files/blob/main/data.json"
        r = c.get(f"{live_hub.url}/adapters/alice/raw-files/commits")  # the UI's own 4-segment page
        assert r.status_code == 200 and info.oid[:12] in r.text
        assert c.get(f"{live_hub.url}/alice/no-such-repo").status_code == 404
        r = c.get(f"{live_hub.url}/api/no-such-endpoint")
        assert r.status_code == 404 and r.headers["x-error-code"] == "NotFound"
    assert str(api.create_repo("alice/raw-files", exist_ok=True)) == f"{live_hub.url}/alice/raw-files"


def test_owner_downloads_private_files_with_the_login_cookie(live_hub):
    api = live_hub.api("alice")
    api.create_repo("alice/secret-files", private=True)
    api.upload_file(
        path_or_fileobj=b"private bytes", path_in_repo="weights.txt", repo_id="alice/secret-files"
    )
    url = "/alice/secret-files/resolve/main/weights.txt"
    with httpx.Client(base_url=live_hub.url) as anon:
        assert anon.get(url).status_code == 404
    with _logged_in(live_hub) as alice:
        r = alice.get(url)
        assert r.status_code == 200 and r.content == b"private bytes"
        assert r.headers["content-disposition"].startswith("attachment")
        sha = api.model_info("alice/secret-files").sha
        page = alice.get(f"/adapters/alice/secret-files/blob/{sha}/weights.txt")  # the UI's file page
        link = url.replace("main", sha)
        assert page.status_code == 200 and f'href="{link}"' in page.text
        assert alice.get(link).content == b"private bytes"
    with _logged_in(live_hub, "bob") as bob:
        assert bob.get(url).status_code == 404
    with httpx.Client(base_url=live_hub.url) as stale:
        stale.cookies.set("ah_token", "ah_revoked-or-unknown")
        assert stale.get(url).status_code == 404  # anonymous, not an error page
        assert stale.get("/alice/raw-files/resolve/main/data.json").status_code == 200


def test_api_docs_are_served_from_the_package(live_hub):
    with httpx.Client(base_url=live_hub.url) as c:
        r = c.get("/docs")
        assert r.status_code == 200 and "script-src 'self'" in r.headers["content-security-policy"]
        assert "'unsafe-inline'" not in r.headers["content-security-policy"]
        refs = re.findall(r'(?:src|href)="([^"]+)"', r.text)
        assert refs and all(ref.startswith("/static/swagger/") for ref in refs)
        for ref in refs:
            a = c.get(ref)
            assert a.status_code == 200 and len(a.content) > 20, ref
        assert "SwaggerUIBundle" in c.get("/static/swagger/swagger-ui-bundle.js").text
        assert c.get("/static/swagger/..%2Fsettings.py").status_code == 404
        assert c.get("/redoc").status_code == 404


def test_secret_key_and_login_attempts_settings(tmp_path, monkeypatch):
    import os

    from adapterhub.server.app import create_app
    from adapterhub.server.hub import Hub
    from adapterhub.server.settings import Settings

    # without ADAPTERHUB_SECRET_KEY: made once in the data dir, owner-only, kept across restarts
    hub = Hub(Settings(data_dir=tmp_path / "a"))
    first = hub.secret
    hub.close()
    assert os.stat(tmp_path / "a" / "secret_key").st_mode & 0o077 == 0 and len(first) >= 32
    hub = Hub(Settings(data_dir=tmp_path / "a"))
    assert hub.secret == first
    hub.close()
    with pytest.raises(ValueError, match="at least 32 characters"):
        Hub(Settings(data_dir=tmp_path / "short", secret_key="too-short"))
    # with it (from the environment, as `adapterhub serve` passes settings): two hubs accept each other's forms
    monkeypatch.setenv("ADAPTERHUB_SECRET_KEY", "k" * 40)
    monkeypatch.setenv("ADAPTERHUB_LOGIN_ATTEMPTS", "2")
    hubs = [Hub(Settings.from_env(data_dir=tmp_path / d)) for d in ("b", "c")]
    try:
        with TestClient(create_app(hub=hubs[0])) as one, TestClient(create_app(hub=hubs[1])) as two:
            token = csrf_token(one)
            two.cookies.update(one.cookies)
            for _ in range(2):
                assert two.post("/login", data={"token": "ah_x", "csrf_token": token}).status_code == 401
            assert two.post("/login", data={"token": "ah_x", "csrf_token": token}).status_code == 429
            assert one.post("/login", data={"token": "ah_x", "csrf_token": token}).status_code == 401
            assert hubs[0].secret == b"k" * 40 and not (tmp_path / "b" / "secret_key").exists()
    finally:
        for h in hubs:
            h.close()


def test_behind_a_tls_proxy_the_cookies_are_secure(live_hub):
    """uvicorn takes X-Forwarded-Proto from loopback (FORWARDED_ALLOW_IPS): the login is then over HTTPS, and
    its cookies are Secure (httpx, like a browser, keeps them off this plain-HTTP test connection: sent by hand)."""
    https = {"X-Forwarded-Proto": "https"}
    r = httpx.get(f"{live_hub.url}/login", headers=https)
    assert "secure" in r.headers["set-cookie"].lower()
    seed = re.search(r"ah_csrf=([^;]+)", r.headers["set-cookie"]).group(1)
    token = re.search(r'name="csrf_token" value="([^"]+)"', r.text).group(1)
    r = httpx.post(
        f"{live_hub.url}/login",
        data={"token": live_hub.tokens["alice"], "csrf_token": token},
        headers={
            **https,
            "Cookie": f"ah_csrf={seed}",
            "Origin": "https://" + live_hub.url.split("://", 1)[1],
        },
    )
    cookies = r.headers.get_list("set-cookie")
    assert r.status_code == 303 and len(cookies) == 2
    assert all("secure" in v.lower() and "httponly" in v.lower() for v in cookies)
    assert "secure" not in httpx.get(f"{live_hub.url}/login").headers["set-cookie"].lower()


def test_adapterhub_serve_sends_the_headers_and_keeps_tokens_out_of_its_log(tmp_path):
    """The real `adapterhub serve` process: its answers carry the headers and its access log (standard output)
    has no token that a client put in a query string."""
    secret = "ah_" + "Q" * 40
    from adapterhub.client.local import local_hub

    with local_hub(tmp_path / "hub", user=None, log=tmp_path / "hub.log") as hub:
        url = hub.url
        r = httpx.get(f"{url}/api/models", params={"token": secret, "search": "x"})
        assert r.status_code == 200 and r.headers["x-content-type-options"] == "nosniff"
        page = httpx.get(f"{url}/login")
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        assert httpx.get(f"{url}/api/models", params={"q": secret}).status_code == 200
    log = (tmp_path / "hub.log").read_text()
    assert "GET /api/models?token=REDACTED&search=x" in log and "q=ah_REDACTED" in log
    assert secret not in log and "QQQQ" not in log


def _routes(app):
    """(path, methods) of every route of the app, the included routers' routes included."""
    for route in app.routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _routes(inner)
        elif getattr(route, "methods", None):
            yield route.path, route.methods


def test_every_form_route_checks_csrf_and_the_api_ignores_the_cookie(tmp_path):
    """A guard for pages added later: every POST route outside /api/ refuses a post from another origin or
    without the form token; every changing /api/ route ignores the login cookie."""
    from adapterhub.server import auth
    from adapterhub.server.app import create_app
    from adapterhub.server.hub import Hub
    from adapterhub.server.settings import Settings

    hub = Hub(Settings(data_dir=tmp_path / "hub"))
    with hub.db.session() as s:
        token = auth.create_token(s, auth.create_account(s, "dora"), "write")
    app = create_app(hub=hub)
    routes = sorted(set((p, m) for p, ms in _routes(app) for m in ms))
    forms = [p for p, m in routes if m == "POST" and not p.startswith("/api/")]
    assert {"/login", "/logout", "/upload", "/settings/tokens"} <= set(forms)
    changing_api = [(p, m) for p, m in routes if m in ("POST", "PUT", "DELETE") and p.startswith("/api/")]
    assert len(changing_api) >= 8
    try:
        with TestClient(app) as c:
            c.cookies.set("ah_token", token)
            good = csrf_token(c)
            for path in forms:
                url = re.sub(r"\{[^}]+\}", "x", path)
                r = c.post(url, data={"csrf_token": good}, headers={"Origin": "http://evil.example"})
                assert r.status_code == 403 and "Refused" in r.text, (path, r.status_code)
                assert c.post(url, data={"a": "b"}).status_code == 403, path
            before = snapshot(hub, tmp_path / "hub")
            for path, method in changing_api:  # with the cookie alone, nothing changes anywhere
                url = re.sub(r"\{[^}:]+(:path)?\}", "x", path).replace("/x/x", "/dora/x")
                c.request(method, url, content=b'{"name": "x", "organization": "dora"}')
            assert snapshot(hub, tmp_path / "hub") == before
            create = {"name": "probe", "organization": "dora"}
            assert c.post("/api/repos/create", json=create).status_code == 401
            r = c.post("/api/repos/create", json=create, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200  # the probe itself is a working request
    finally:
        hub.close()


def test_raw_file_names_cannot_break_the_disposition_header():
    from adapterhub.server.security import raw_file_headers

    h = raw_file_headers('dir/a"; filename="evil.exe\r\nX: y.html')
    fallback, encoded = h["Content-Disposition"].split("; ", 2)[1:]
    assert fallback == 'filename="a__ filename__evil.exe__X_ y.html"'
    assert encoded == "filename*=UTF-8''a%22%3B%20filename%3D%22evil.exe%0D%0AX%3A%20y.html"
    assert h["Content-Type"] == "text/plain; charset=utf-8"
