"""The server-rendered web UI over HTTP (no JavaScript involved): pages, facet links, adapter page contents,
login and the upload form (folder files and zip), including refusals that leave nothing behind."""

from __future__ import annotations

import hashlib
import html
import io
import re
import zipfile

import httpx
import pytest

try:
    from test_index import INTEROP, LEGACY
    from test_search import card, folder, upload_adapter
except ImportError:  # tests/ as a package
    from tests.server.test_index import INTEROP, LEGACY
    from tests.server.test_search import card, folder, upload_adapter

from server_support import csrf_token  # noqa: E402  (tests/server is on sys.path: conftest.py)

pytestmark = pytest.mark.skipif(not (LEGACY.is_dir() and INTEROP.is_dir()), reason="../shared data missing")


@pytest.fixture(scope="module")
def ui(live_hub):
    files, oid = upload_adapter(
        live_hub,
        "alice/ui-seqbn",
        INTEROP / "bert/adapters/seq_bn-seqcls/safetensors",
        task="sentiment",
        subtask="sst-2",
        language="en",
        license="mit",
        metrics={"accuracy": 0.875},
    )
    with httpx.Client(base_url=live_hub.url, follow_redirects=False) as c:
        yield c, files, oid


def text(r: httpx.Response) -> str:
    return html.unescape(r.text)


def test_home_tasks_languages_models(live_hub, ui):
    from sqlalchemy import select

    from adapterhub.server.index_models import TaxonomyTask

    c, _, _ = ui
    r = c.get("/")
    assert r.status_code == 200 and "alice/ui-seqbn" in r.text and 'href="/adapters?task=nli"' in r.text
    # taxonomy kinds apart: the Tasks box lists no language adapters' "tasks", the Languages box has them
    with live_hub.hub.db.session() as s:
        lang_tasks = set(s.scalars(select(TaxonomyTask.name).where(TaxonomyTask.kind == "text_lang")))
    tasks_box = r.text.split("<h2>Tasks</h2>")[1].split("</section>")[0]
    linked = set(re.findall(r'href="/adapters\?task=([^"&]+)"', tasks_box))
    assert lang_tasks and "sentiment" in linked and not linked & lang_tasks, linked & lang_tasks
    assert 'href="/adapters?language=ar"' in r.text.split("<h2>Languages</h2>")[1]
    # metrics are labelled with their name (no bare star), downloads spelt out
    card = r.text.split('href="/adapters/alice/ui-seqbn"')[1].split("</li>")[0]
    assert "accuracy: 0.875" in card and "★" not in r.text and re.search(r"\d+ downloads?<", card)
    (item,) = c.get("/api/adapters", params={"q": "alice/ui-seqbn"}).json()["items"][:1]
    assert item["id"] == "alice/ui-seqbn" and (item["score"], item["score_metric"]) == (0.875, "accuracy")
    r = c.get("/tasks")
    assert r.status_code == 200 and "Sentiment Analysis" in r.text and "Language adapters" in r.text
    assert 'href="/adapters?task=sentiment&amp;subtask=sst-2"' in r.text
    r = c.get("/languages")
    assert r.status_code == 200 and 'href="/adapters?language=ar"' in r.text and "Arabic" in r.text
    r = c.get("/models")
    assert r.status_code == 200 and "bert-base-multilingual-cased" in r.text and "alice/tiny-bert" in r.text
    css = c.get("/static/ui.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert c.get("/static/..%2Fui.py").status_code == 404


def test_search_page_facets_and_pagination(ui):
    c, _, _ = ui
    r = c.get("/adapters", params={"task": "sentiment"})
    page = text(r)
    assert r.status_code == 200 and "alice/ui-seqbn" in page
    total = int(re.search(r"<h1>(\d+) adapters?", page).group(1))
    assert total == c.get("/api/adapters", params={"task": "sentiment"}).json()["total"]
    # facet links toggle filters on and off
    assert 'href="/adapters?task=sentiment&amp;subtask=sst-2"' in r.text
    assert 'href="/adapters"' in r.text  # the active task link removes the filter
    r = c.get("/adapters", params={"task": "sentiment", "library": "adapters", "license": "mit"})
    assert "1 adapter</h1>" in r.text and "alice/ui-seqbn" in r.text
    r = c.get("/adapters", params={"q": "pfeiffer", "author": "ukp", "page": 2, "sort": "name"})
    assert "Page 2 of" in r.text and 'rel="prev"' in r.text
    assert c.get("/adapters", params={"q": "zzzz-nothing"}).text.count('class="card"') == 0


def test_adapter_page_contents(ui):
    c, files, oid = ui
    page = text(c.get("/adapters/alice/ui-seqbn"))
    for path, data in files.items():  # every file with its size and sha256
        assert path in page and hashlib.sha256(data).hexdigest() in page
    assert oid[:12] in page and "validation:" in page
    assert "9076f36a74755ac4" in page and "seq_bn" in page and "LABEL_0, LABEL_1, LABEL_2" in page
    assert "accuracy" in page and "0.875" in page
    assert 'id="compare" href="/analysis?task=sentiment&subtask=sst-2"' in page
    assert 'model.load_adapter("alice/ui-seqbn@' + oid in page  # adapterhub snippet, pinned
    assert "adapters.init(model)" in page and f'version="{oid}"' in page
    assert "PeftModel" not in page  # an AdapterHub-format adapter gets no PEFT snippet
    # the anatomy drawing: the config's bottleneck at the base model's hidden size (32 / 16) and 2 layers
    anatomy = page[page.index('id="anatomy"') :]
    assert '<svg xmlns="http://www.w3.org/2000/svg"' in anatomy and 'data-count="2"' in anatomy
    assert re.search(r'data-part="bottleneck-ffn" data-placement="sequential" data-reduction="16"', anatomy)
    # one parameter count: the adapter's own, the head's apart, the same in the overview and the drawing
    assert re.search(r'id="num-params">324 <span class="muted small">\+ 99 in the head', page)
    assert "parameters checked" not in page
    assert "32 → 2 → 32" in anatomy and "Adapter: 324 parameters (+ 99 in the head)" in anatomy
    legacy = text(c.get("/adapters/ukp/bert-base-uncased_sentiment_sst-2_pfeiffer"))
    assert "metadata only" in legacy and "cannot be downloaded" in legacy and "sentiment/sst-2@ukp" in legacy
    r = c.get("/adapters/nobody/nothing")
    assert r.status_code == 404 and "No adapter nobody/nothing" in text(r)


def test_card_html_is_escaped(live_hub, ui):
    c, _, _ = ui
    evil = card(base_model="alice/tiny-bert").replace(
        b"An adapter.", b"<script>alert(1)</script>\n\n**bold** <!-- hidden note -->"
    )
    upload_adapter(live_hub, "alice/ui-escaped", INTEROP / "bert/adapters/double_seq_bn/safetensors")
    live_hub.api("alice").upload_file(
        path_or_fileobj=evil, path_in_repo="README.md", repo_id="alice/ui-escaped"
    )
    r = c.get("/adapters/alice/ui-escaped")
    body = r.text.split('id="card-body">')[1].split("</section>")[0]
    assert "<script" not in body and "alert(1)" not in body and "<strong>bold</strong>" in body
    assert "hidden note" not in body
    # the front matter is metadata, not text
    meta = r.text.split('id="card-metadata">')[1].split("</dl>")[0]
    assert "<dt>Base model</dt><dd>alice/tiny-bert</dd>" in meta and "base_model:" not in body


def test_login_cookie_and_private_visibility(live_hub, ui):
    c, _, _ = ui
    upload_adapter(live_hub, "alice/ui-private", INTEROP / "bert/adapters/double_seq_bn/safetensors")
    live_hub.api("alice").update_repo_settings("alice/ui-private", private=True)
    assert c.get("/adapters/alice/ui-private").status_code == 404
    r = c.post("/login", data={"token": "ah_wrong", "csrf_token": csrf_token(c)})
    assert r.status_code == 401 and "Unknown or revoked token" in r.text
    with httpx.Client(base_url=live_hub.url) as alice:
        form = {"token": live_hub.tokens["alice"], "csrf_token": csrf_token(alice)}
        r = alice.post("/login", data=form, follow_redirects=False)
        assert r.status_code == 303 and "ah_token" in r.headers["set-cookie"]
        assert "httponly" in r.headers["set-cookie"].lower()
        alice.cookies.set("ah_token", live_hub.tokens["alice"])
        assert alice.get("/adapters/alice/ui-private").status_code == 200
        assert "alice · log out" in alice.get("/upload").text


def _post_upload(c, repo_id: str, files: list[tuple[str, tuple]], token: str | None = None, **fields):
    data = {"repo_id": repo_id, "csrf_token": csrf_token(c, "/upload"), **fields}
    if token:
        data["token"] = token
    return c.post("/upload", data=data, files=files)


def test_upload_form_folder_and_zip(live_hub, ui):
    c, _, _ = ui
    src = folder(INTEROP / "bert/adapters/seq_bn/safetensors")
    src["README.md"] = card(base_model="alice/tiny-bert", task="nli", subtask="rte")
    # a folder picked in the browser: names carry the folder name, which is stripped
    parts = [("folder", (f"myadapter/{p}", d, "application/octet-stream")) for p, d in src.items()]
    r = _post_upload(c, "alice/ui-form", parts, token=live_hub.tokens["alice"], message="from the form")
    assert r.status_code == 303, text(r)
    assert r.headers["location"].startswith("/adapters/alice/ui-form?uploaded=")
    oid = r.headers["location"].split("=")[-1]
    page = text(c.get(r.headers["location"]))
    assert "Uploaded as commit" in page and "from the form" in page
    api = live_hub.api("alice")
    assert sorted(api.list_repo_files("alice/ui-form")) == sorted(src)
    assert api.model_info("alice/ui-form").sha == oid
    hit = c.get("/api/adapters", params={"author": "alice", "task": "nli"}).json()["items"]
    assert [i["id"] for i in hit] == ["alice/ui-form"] and hit[0]["commit"] == oid
    # a zip archive with a top folder
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for p, d in folder(INTEROP / "bert/adapters/double_seq_bn/safetensors").items():
            z.writestr(f"houlsby/{p}", d)
        z.writestr("houlsby/README.md", card(base_model="alice/tiny-bert"))
    r = _post_upload(
        c,
        "ui-zip",
        [("zip", ("houlsby.zip", buf.getvalue(), "application/zip"))],
        token=live_hub.tokens["alice"],
    )
    assert r.status_code == 303, text(r)
    assert sorted(api.list_repo_files("alice/ui-zip")) == [
        "README.md",
        "adapter.safetensors",
        "adapter_config.json",
    ]


def test_upload_form_refusals_leave_nothing(live_hub, ui):
    c, _, _ = ui
    from adapterhub.server.models import Commit

    before = (live_hub.count(Commit), live_hub.blob_files())
    tok = live_hub.tokens["alice"]
    cfg = (INTEROP / "bert/adapters/seq_bn/bin/adapter_config.json").read_bytes()
    weights = (INTEROP / "bert/adapters/seq_bn/bin/pytorch_adapter.bin").read_bytes()
    r = _post_upload(
        c,
        "alice/ui-bad",
        [
            ("files", ("adapter_config.json", cfg, "application/json")),
            ("files", ("pytorch_adapter.bin", weights, "application/octet-stream")),
        ],
        token=tok,
    )
    assert (
        r.status_code in (400, 415, 422)
        and "pytorch_adapter.bin" in text(r)
        and 'id="upload-error"' in r.text
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("../evil.txt", "x")
    r = _post_upload(c, "alice/ui-bad", [("zip", ("evil.zip", buf.getvalue(), "application/zip"))], token=tok)
    assert r.status_code == 400 and "'..'" in text(r)
    r = _post_upload(
        c, "alice/ui-bad", [("files", ("a.txt", b"x", "text/plain"))], token=live_hub.tokens["alice-read"]
    )
    assert r.status_code == 403 and "read-only" in text(r)
    r = _post_upload(c, "alice/ui-bad", [("files", ("a.txt", b"x", "text/plain"))])
    assert r.status_code == 401 and "Log in" in text(r)
    r = _post_upload(c, "alice/ui-bad", [], token=tok)
    assert r.status_code == 400 and "Choose a folder" in text(r)
    assert (live_hub.count(Commit), live_hub.blob_files()) == before
