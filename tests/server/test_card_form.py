"""Card metadata from forms (adapterhub/server/card_form.py): the upload form's fields and the card editor
write a proper README.md; values outside the hub's lists only through "other"; nothing is stored on refusal."""

from __future__ import annotations

import html

import httpx
import pytest
import yaml

from adapterhub.server.card_form import OTHER, CardFieldError, CardFields, Options, compose_card, read_fields

try:
    from server_support import csrf_token
    from test_index import INTEROP
    from test_search import folder, upload_adapter
except ImportError:  # tests/ as a package
    from tests.server.server_support import csrf_token
    from tests.server.test_index import INTEROP
    from tests.server.test_search import folder, upload_adapter

OPTS = Options(
    base_models=["alice/tiny-bert"],
    tasks=[("nli", "NLI", "text_task"), ("sentiment", "Sentiment", "text_task")],
    subtasks={"nli": [("rte", "RTE")], "sentiment": [("sst-2", "SST-2")]},
    languages=[("en", "English")],
)


def test_read_fields_lists_other_and_metrics():
    f = read_fields(
        {
            "task": "nli",
            "subtask": "rte",
            "language": "en",
            "license": "mit",
            "metrics": "accuracy: 0.9\nf1 = 0.8",
        },
        OPTS,
    )
    assert f.values == {"task": "nli", "subtask": "rte", "language": "en", "license": "mit"}
    assert f.metrics == {"accuracy": 0.9, "f1": 0.8} and f.body is None
    f = read_fields(
        {"task": OTHER, "task_other": "paraphrase", "subtask": OTHER, "subtask_other": "mrpc"}, OPTS
    )
    assert f.values == {"task": "paraphrase", "subtask": "mrpc"}
    for form, problem in [
        ({"task": "sentimnet"}, "'sentimnet' is not in the hub's list"),
        ({"task": OTHER}, "task: 'other' needs a value"),
        ({"language": OTHER, "language_other": "e\u202en"}, "language: 'other' needs a value"),
        ({"task": "nli", "subtask": "sst-2"}, "'sst-2' is not a dataset of the task 'nli'"),
        ({"metrics": "accuracy 0.9"}, "metrics, line 1"),
        ({"metrics": "acc: nan"}, "metrics, line 1"),
        ({"base_model": "evil/model"}, "base_model: 'evil/model' is not in the hub's list"),
    ]:
        with pytest.raises(CardFieldError, match=problem):
            read_fields(form, OPTS)
    # several problems at once, all named
    with pytest.raises(CardFieldError, match="task: .*; metrics"):
        read_fields({"task": "x", "metrics": "bad"}, OPTS)


def test_compose_card_updates_front_matter_and_keeps_the_rest():
    old = "---\nlicense: mit\ntags: [a]\nmetrics: {f1: 0.5}\n---\n\n# Old\n\nText.\n"
    text = compose_card(old, CardFields({"task": "nli", "license": "apache-2.0"}, {"accuracy": 0.9}), "x/y")
    front = yaml.safe_load(text.split("---\n")[1])
    assert front == {
        "license": "apache-2.0",
        "tags": ["a"],
        "metrics": {"f1": 0.5, "accuracy": 0.9},
        "task": "nli",
    }
    assert text.endswith("# Old\n\nText.\n")
    assert compose_card(old, CardFields(body="New body\n"), "x/y").endswith("---\n\nNew body\n")
    assert compose_card(None, CardFields({"task": "nli"}), "x/y") == "---\ntask: nli\n---\n\n# x/y\n"


@pytest.fixture(scope="module")
def web(live_hub):
    if not INTEROP.is_dir():
        pytest.skip("../shared fixtures missing")
    upload_adapter(
        live_hub, "alice/card-base", INTEROP / "bert/adapters/seq_bn/safetensors"
    )  # + alice/tiny-bert
    with httpx.Client(base_url=live_hub.url) as c:
        c.cookies.set("ah_token", live_hub.tokens["alice"])
        yield c


def _upload(c, repo_id, files, **fields):
    data = {"repo_id": repo_id, "csrf_token": csrf_token(c, "/upload"), **fields}
    return c.post("/upload", data=data, files=files)


@pytest.fixture(scope="module")
def card_form(web):
    """alice/card-form, uploaded through the form with every metadata field: the answer and the files sent
    (the upload test checks the card it wrote, the editor test edits it; each works alone)."""
    parts = [
        ("files", (p, d, "application/octet-stream"))
        for p, d in folder(INTEROP / "bert/adapters/seq_bn/safetensors").items()
    ]
    r = _upload(
        web, "alice/card-form", parts, base_model="alice/tiny-bert", task="sentiment", subtask="sst-2",
        language="en", license=OTHER, license_other="my-licence", metrics="accuracy: 0.88", body="Trained on SST-2.",
    )  # fmt: skip
    return r, parts


def test_upload_with_metadata_fields_writes_the_card(web, live_hub, card_form):
    c = web
    page = c.get("/upload").text
    assert '<option value="alice/tiny-bert">' in page and '<option value="sst-2">' in page
    r, parts = card_form
    assert r.status_code == 303, html.unescape(r.text)[:3000]
    card = live_hub.api("alice").hf_hub_download("alice/card-form", "README.md")
    text = open(card, encoding="utf-8").read()
    front = yaml.safe_load(text.split("---\n")[1])
    assert front == {"base_model": "alice/tiny-bert", "task": "sentiment", "subtask": "sst-2", "language": "en",
                     "license": "my-licence", "metrics": {"accuracy": 0.88}}  # fmt: skip
    assert text.endswith("---\n\nTrained on SST-2.")
    (hit,) = c.get("/api/adapters", params={"q": "alice/card-form"}).json()["items"][:1]
    assert (hit["id"], hit["task"], hit["subtask"], hit["language"], hit["license"], hit["base_model"]) == (
        "alice/card-form", "sentiment", "sst-2", "en", "my-licence", "alice/tiny-bert",
    )  # fmt: skip
    assert (hit["score"], hit["score_metric"]) == (0.88, "accuracy")
    # an uploaded card is updated: its other keys and body stay, the form's fields win
    parts2 = parts + [
        (
            "files",
            (
                "README.md",
                b"---\nlicense: mit\ntags: [x]\nbase_model: alice/tiny-bert\n---\n\n# Mine\n",
                "text/markdown",
            ),
        )
    ]
    r = _upload(c, "alice/card-form2", parts2, task="nli", subtask="rte")
    assert r.status_code == 303, html.unescape(r.text)[:3000]
    text = open(
        live_hub.api("alice").hf_hub_download("alice/card-form2", "README.md"), encoding="utf-8"
    ).read()
    assert yaml.safe_load(text.split("---\n")[1]) == {
        "license": "mit",
        "tags": ["x"],
        "base_model": "alice/tiny-bert",
        "task": "nli",
        "subtask": "rte",
    }
    assert text.endswith("# Mine\n")


def test_refused_metadata_leaves_nothing(web, live_hub):
    from adapterhub.server.models import Commit, Repo

    c = web
    before = (live_hub.count(Repo), live_hub.count(Commit), live_hub.blob_files())
    parts = [("files", ("adapter_config.json", b"{}", "application/json"))]
    r = _upload(c, "alice/card-bad", parts, task="sentimnet", metrics="acc 1")
    assert r.status_code == 400
    err = html.unescape(r.text.split('id="upload-error">')[1].split("</pre>")[0])
    assert "'sentimnet' is not in the hub's list" in err and "metrics, line 1" in err
    assert 'name="repo_id" value="alice/card-bad"' in r.text and "acc 1</textarea>" in r.text  # values kept
    assert (live_hub.count(Repo), live_hub.count(Commit), live_hub.blob_files()) == before


def test_card_editor(web, live_hub, card_form):
    c = web
    assert card_form[0].status_code == 303
    r = c.get("/adapters/alice/card-form/card")
    assert r.status_code == 200
    assert '<option value="sentiment" selected>' in r.text and '<option value="__other__" selected>' in r.text
    assert 'value="my-licence"' in r.text and "accuracy: 0.88</textarea>" in r.text
    parent = r.text.split('name="parent" value="')[1].split('"')[0]
    form = {
        "csrf_token": csrf_token(c, "/adapters/alice/card-form/card"),
        "parent": parent, "task": "sentiment", "subtask": "sst-2", "language": "en", "license": "mit",
        "metrics": "accuracy: 0.9", "body": "# Better card\n\nNew text.\n", "message": "Edit the card",
    }  # fmt: skip
    r = c.post("/adapters/alice/card-form/card", data=form)
    assert r.status_code == 303, html.unescape(r.text)[:2000]
    text = open(
        live_hub.api("alice").hf_hub_download("alice/card-form", "README.md"), encoding="utf-8"
    ).read()
    front = yaml.safe_load(text.split("---\n")[1])
    assert (
        front["license"] == "mit" and front["metrics"] == {"accuracy": 0.9} and text.endswith("New text.\n")
    )
    assert live_hub.api("alice").list_repo_commits("alice/card-form")[0].title == "Edit the card"
    # a stale form (main moved since it was opened) is refused and changes nothing
    r = c.post("/adapters/alice/card-form/card", data={**form, "body": "stale"})
    assert r.status_code == 409 and "changed since the editor was opened" in r.text
    # others cannot edit: read token, another user, no login, no CSRF token
    with httpx.Client(base_url=live_hub.url) as bob:
        bob.cookies.set("ah_token", live_hub.tokens["bob"])
        fresh = {**form, "csrf_token": csrf_token(bob, "/adapters/alice/card-form/card"), "parent": ""}
        assert bob.post("/adapters/alice/card-form/card", data=fresh).status_code == 403
    with httpx.Client(base_url=live_hub.url) as anon:
        fresh = {**form, "csrf_token": csrf_token(anon, "/adapters/alice/card-form/card"), "parent": ""}
        assert anon.post("/adapters/alice/card-form/card", data=fresh).status_code == 401
    assert c.post("/adapters/alice/card-form/card", data={**form, "csrf_token": "x"}).status_code == 403
    text2 = open(
        live_hub.api("alice").hf_hub_download("alice/card-form", "README.md"), encoding="utf-8"
    ).read()
    assert text2 == text
