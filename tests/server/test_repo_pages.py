"""Commit list (changed files per commit) and file pages (size, sha256, escaped preview, safetensors header)
over HTTP against a live hub."""

from __future__ import annotations

import hashlib
import html
import re

import httpx
import pytest

try:
    from test_index import INTEROP
    from test_search import upload_adapter
except ImportError:  # tests/ as a package
    from tests.server.test_index import INTEROP
    from tests.server.test_search import upload_adapter

pytestmark = pytest.mark.skipif(not INTEROP.is_dir(), reason="../shared fixtures missing")
LONG = "notes/" + "a-very-long-file-name-without-any-break-" * 4 + ".txt"


@pytest.fixture(scope="module")
def repo(live_hub):
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    files, first = upload_adapter(live_hub, "alice/pages", INTEROP / "bert/adapters/seq_bn/safetensors")
    api = live_hub.api("alice")
    second = api.create_commit(
        "alice/pages",
        [
            CommitOperationAdd(LONG, b"<script>alert(1)</script>\nline two \xc3\xa9\n"),
            CommitOperationAdd("README.md", files["README.md"] + b"\nMore.\n"),
            CommitOperationAdd("image.png", b"\x89PNG\r\n\x1a\n\x00\x00binary"),
            CommitOperationDelete("adapter_config.json"),
        ],
        commit_message="Second commit\n\nWith a body that explains it.",
    ).oid
    with httpx.Client(base_url=live_hub.url) as c:
        yield c, files, first, second


def test_commit_list_with_changed_files(repo):
    c, files, first, second = repo
    r = c.get("/adapters/alice/pages/commits")
    assert r.status_code == 200
    page = html.unescape(r.text)
    blocks = re.findall(r'<li class="panel commit" id="c-([0-9a-f]{40})">(.*?)</li>', page, re.S)
    assert [oid for oid, _ in blocks][:2] == [second, first]  # newest first
    assert len(blocks) == 3 and "No file changed." in blocks[2][1]  # the repository's initial commit
    changed = {
        oid: sorted(re.findall(r"badge-change-(\w+)\">\w+</span></td>\s*<td><a href=\"([^\"]+)\"", body))
        for oid, body in blocks
    }
    assert changed[first] == sorted(("added", f"/adapters/alice/pages/blob/{first}/{p}") for p in files)
    assert changed[second] == sorted(
        [
            ("added", f"/adapters/alice/pages/blob/{second}/{LONG}"),
            ("added", f"/adapters/alice/pages/blob/{second}/image.png"),
            ("modified", f"/adapters/alice/pages/blob/{second}/README.md"),
            ("deleted", f"/adapters/alice/pages/blob/{first}/adapter_config.json"),  # the parent's version
        ]
    )
    assert "With a body that explains it." in dict(blocks)[second] and "branch:main" in dict(blocks)[second]
    # the adapter page links to it
    assert 'href="/adapters/alice/pages/commits"' in c.get("/adapters/alice/pages").text


def test_safetensors_file_page(repo):
    from safetensors import safe_open

    c, files, first, _ = repo
    r = c.get(f"/adapters/alice/pages/blob/{first}/adapter.safetensors")
    assert r.status_code == 200
    data = files["adapter.safetensors"]
    assert hashlib.sha256(data).hexdigest() in r.text and f"({len(data):,} bytes)" in r.text
    assert f'href="/alice/pages/resolve/{first}/adapter.safetensors"' in r.text
    rows = re.findall(
        r"<tr><td><code>([^<]+)</code></td><td>(\w+)</td><td>\[([\d, ]*)\]</td><td class=\"num\">([\d,]+)</td></tr>",
        r.text,
    )
    with safe_open(str(INTEROP / "bert/adapters/seq_bn/safetensors/adapter.safetensors"), "np") as f:
        expected = sorted(
            (k, f.get_slice(k).get_dtype(), ", ".join(map(str, f.get_slice(k).get_shape()))) for k in f.keys()
        )
    assert [(n, d, s) for n, d, s, _ in rows] == expected and len(rows) == 8
    assert sum(int(p.replace(",", "")) for *_, p in rows) == 2 * 162
    # the same page by branch name
    assert c.get("/adapters/alice/pages/blob/main/adapter.safetensors").text.count("<tr><td><code>") == 8


def test_text_and_binary_file_pages(repo, live_hub):
    c, _, _, second = repo
    r = c.get(f"/adapters/alice/pages/blob/{second}/{LONG}")
    assert r.status_code == 200
    preview = r.text.split('id="preview">')[1].split("</pre>")[0]
    assert preview == "&lt;script&gt;alert(1)&lt;/script&gt;\nline two é\n"
    r = c.get(f"/adapters/alice/pages/blob/{second}/image.png")
    assert r.status_code == 200 and "Binary file: no preview." in r.text and 'id="preview"' not in r.text
    # missing files, deleted files at the new commit, unknown revisions: 404
    assert c.get(f"/adapters/alice/pages/blob/{second}/adapter_config.json").status_code == 404
    assert c.get("/adapters/alice/pages/blob/nope/README.md").status_code == 404
    # private repositories: 404 for others, shown to the owner
    upload_adapter(live_hub, "alice/pages-private", INTEROP / "bert/adapters/seq_bn/safetensors")
    live_hub.api("alice").update_repo_settings("alice/pages-private", private=True)
    assert c.get("/adapters/alice/pages-private/commits").status_code == 404
    assert c.get("/adapters/alice/pages-private/blob/main/README.md").status_code == 404
    headers = {"authorization": f"Bearer {live_hub.tokens['alice']}"}
    assert c.get("/adapters/alice/pages-private/blob/main/README.md", headers=headers).status_code == 200
    assert c.get("/adapters/alice/pages-private/commits", headers=headers).status_code == 200


def test_text_preview_cut_inside_a_character():
    from adapterhub.server.repo_pages import text_preview

    data = ("é" * 10).encode()
    assert text_preview(data, limit=5) == "éé"  # the cut third character is dropped, not an error
    assert text_preview(data) == "é" * 10
    assert text_preview(b"\xff\xfe") is None and text_preview(b"a\x00b") is None


@pytest.mark.parametrize(
    "path",
    [
        "/adapters/alice/pages/blob/main/%00",
        "/adapters/alice/pages/blob/%00/README.md",
        "/adapters/al%00ice/pages/commits",
        "/adapters/al%00ice/pages",
        "/adapters?task=%00",
        "/adapters/alice/pages/commits?page=99999999999999999999999",
        "/adapters/alice/pages/card",
        "/adapters/%ff/pages/settings",
        "/analysis?task=%00&subtask=%00&sort=%00&order=x",
        "/api/analysis?task=%00",
        "/api/analysis?task=a&metric=%00",
        "/orgs/%00/members",
    ],
)
def test_hostile_page_requests_answer_4xx_or_a_page(repo, path):
    c = repo[0]
    r = c.get(path, follow_redirects=False)
    assert r.status_code < 500, (path, r.status_code, r.text[:300])
