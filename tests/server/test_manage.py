"""Managing repositories and organisations in the browser (adapterhub/server/manage.py), over HTTP with the
login cookie and the CSRF token of each form: create a repository, change its visibility, create and delete
tags and branches, delete it with confirmation, organisation members; refusals change nothing."""

from __future__ import annotations

import html

import httpx

try:
    from server_support import csrf_token
except ImportError:  # tests/ as a package
    from tests.server.server_support import csrf_token


def client(live_hub, who: str | None = "alice") -> httpx.Client:
    c = httpx.Client(base_url=live_hub.url)
    if who:
        c.cookies.set("ah_token", live_hub.tokens[who])
    return c


def post(c: httpx.Client, path: str, **data) -> httpx.Response:
    return c.post(path, data={"csrf_token": csrf_token(c, path), **data})


def test_create_repository(live_hub):
    with client(live_hub) as c:
        page = c.get("/new").text
        assert '<option value="alice">' in page and '<option value="acme">' in page  # alice writes to acme
        r = post(c, "/new", namespace="acme", name="made-here", private="on")
        assert (
            r.status_code == 303 and r.headers["location"] == "/adapters/acme/made-here/settings?done=created"
        )
        info = live_hub.api("alice").model_info("acme/made-here")
        assert info.private is True
        r = post(c, "/new", namespace="acme", name="made-here")
        assert r.status_code == 409 and "already exists" in r.text
        r = post(c, "/new", namespace="bob", name="not-mine")
        assert r.status_code == 403 and not live_hub.api("bob").repo_exists("bob/not-mine")
        assert post(c, "/new", namespace="alice", name="bad name!").status_code == 400
    with client(live_hub, None) as anon:
        assert anon.get("/new", follow_redirects=False).headers["location"] == "/login?next=/new"
    with client(live_hub, "alice-read") as ro:
        r = post(ro, "/new", namespace="alice", name="read-only")
        assert r.status_code == 403 and "read-only" in html.unescape(r.text)


def test_settings_visibility_refs_and_delete(live_hub):
    api = live_hub.api("alice")
    api.create_repo("alice/managed")
    api.upload_file(path_or_fileobj=b"hello", path_in_repo="notes.txt", repo_id="alice/managed")
    head = api.model_info("alice/managed").sha
    path = "/adapters/alice/managed/settings"
    with client(live_hub) as c:
        assert c.get(path).status_code == 200
        r = post(c, path, action="visibility", private="on")
        assert r.status_code == 303 and api.model_info("alice/managed").private is True
        assert "Now: private." in c.get(path).text
        assert post(c, path, action="visibility").status_code == 303
        assert api.model_info("alice/managed").private is False
        # tags and branches
        assert post(c, path, action="create_ref", kind="tag", ref="v1", start="main").status_code == 303
        assert post(c, path, action="create_ref", kind="branch", ref="dev").status_code == 303
        refs = api.list_repo_refs("alice/managed")
        assert [(t.name, t.target_commit) for t in refs.tags] == [("v1", head)]
        assert sorted(b.name for b in refs.branches) == ["dev", "main"]
        r = post(c, path, action="create_ref", kind="tag", ref="v1")
        assert r.status_code == 409 and "already exists" in r.text
        assert post(c, path, action="create_ref", kind="label", ref="x").status_code == 400
        assert post(c, path, action="delete_ref", kind="tag", ref="v1").status_code == 303
        r = post(c, path, action="delete_ref", kind="branch", ref="main")
        assert r.status_code == 403 and "cannot be deleted" in r.text
        assert [t.name for t in api.list_repo_refs("alice/managed").tags] == []
        # deletion needs the name typed again
        r = post(c, path, action="delete", confirm="managed")
        assert (
            r.status_code == 400
            and "type alice/managed to confirm" in r.text
            and api.repo_exists("alice/managed")
        )
    # others: bob cannot change alice's repository, anonymous callers are sent to the login page
    with client(live_hub, "bob") as bob:
        r = post(bob, path, action="delete", confirm="alice/managed")
        assert r.status_code == 403 and api.repo_exists("alice/managed")
    with client(live_hub, None) as anon:
        assert anon.get(path, follow_redirects=False).status_code == 303
        r = anon.post(
            "/new", data={"csrf_token": csrf_token(anon, "/login"), "namespace": "alice", "name": "x"}
        )
        assert r.status_code == 303 and r.headers["location"] == "/login?next=/new"
    with client(live_hub) as c:
        assert (
            c.post(path, data={"action": "delete", "confirm": "alice/managed"}).status_code == 403
        )  # no CSRF
        r = post(c, path, action="delete", confirm="alice/managed")
        assert r.status_code == 303 and r.headers["location"].startswith("/adapters?author=alice")
    assert not api.repo_exists("alice/managed")


def test_private_repository_settings_are_hidden_from_others(live_hub):
    api = live_hub.api("alice")
    api.create_repo("alice/hidden", private=True)
    with client(live_hub, "bob") as bob:
        assert bob.get("/adapters/alice/hidden/settings").status_code == 404
        r = post(bob, "/adapters/alice/hidden/settings", action="visibility")
        assert r.status_code == 404 and api.model_info("alice/hidden").private is True


def test_organisation_members(live_hub):
    from sqlalchemy import select

    from adapterhub.server import auth
    from adapterhub.server.models import Account

    path = "/orgs/acme/members"
    with client(live_hub, "bob") as bob:
        assert bob.get(path).status_code == 404  # not a member
    with client(live_hub) as c:
        page = c.get(path).text
        assert 'data-user="alice"' in page and "Only the organisation's admins" in page  # alice: write
        r = post(c, path, action="add", user="bob", role="read")
        assert r.status_code == 403
        with live_hub.hub.db.session() as s:
            acme = s.scalar(select(Account).where(Account.name == "acme"))
            alice = s.scalar(select(Account).where(Account.name == "alice"))
            auth.add_member(s, acme, alice, "admin")
        r = post(c, path, action="add", user="bob", role="read")
        assert r.status_code == 200 and "bob is now read in acme." in r.text
        assert '<tr data-user="bob"><td>bob</td><td>read</td>' in r.text
        assert post(c, path, action="add", user="bob", role="owner").status_code == 400
        assert post(c, path, action="add", user="nobody", role="read").status_code == 400
        assert post(c, path, action="add", user="acme", role="read").status_code == 400  # an org is no user
        # the last admin stays
        r = post(c, path, action="add", user="alice", role="write")
        assert r.status_code == 409 and "last admin" in r.text
        r = post(c, path, action="remove", user="bob")
        assert r.status_code == 200 and 'data-user="bob"' not in r.text
    with client(live_hub, "bob") as bob:
        assert bob.get(path).status_code == 404  # removed
