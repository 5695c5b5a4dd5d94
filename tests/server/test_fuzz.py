"""Property-based fuzzing of a live hub: no generated request may answer 5xx or drop the connection.

Requests are drawn over the hub's OpenAPI schema (its paths and declared query parameters) and over the
routes that the schema leaves out (the Hugging Face protocol, downloads, web pages and forms), with
hostile values: wrong JSON types, lists for objects, invalid UTF-8, NDJSON commit lines, numbers beyond
64 bits, encoded slashes and NULs, control characters, forged tokens. Runs are derandomised (the same
requests on every run) and bounded to a few hundred requests per database (ADAPTERHUB_FUZZ_EXAMPLES=N for more,
ADAPTERHUB_FUZZ_RANDOM=1 for new ones)."""

from __future__ import annotations

import base64
import json
import os
import re
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("ADAPTERHUB_FUZZ_EXAMPLES", "300"))  # more for a longer search

SEGMENTS = st.sampled_from(
    ["alice", "fz", "fzp", "bob", "main", "v1", "README.md", "adapter_config.json", "d", "x.txt", "tree",
     "refs", "commit", "commits", "preupload", "paths-info", "branch", "tag", "settings", "validation",
     "revision", "resolve", "auth-check", "adapters", "api", "models", "..", ".", "%2F", "%00", "%ff", "%",
     "refs%2Fpr%2F1", "0" * 40, "9" * 30, "-1", "\u202e", "é", ""]
) | st.text(alphabet=st.characters(codec="utf-8"), max_size=12).map(lambda s: s.replace("/", "%2F"))  # fmt: skip

NUMBERS = st.sampled_from(["0", "-1", "1", "9" * 30, "18446744073709551617", "1e9", "nan", "0x10", ""])
VALUES = (
    NUMBERS | st.text(max_size=20) | st.sampled_from(["alice/fz", "alice/fzp@main", "fz@alice", "a" * 300])
)

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["name", "organization", "private", "paths", "files", "path", "size", "tag", "message",
                         "startingPoint", "content", "summary", "key", "value", "oid", "type", "scope"]),
        inner, max_size=4),
    max_leaves=10,
)  # fmt: skip


def _ndjson(lines) -> bytes:
    return b"".join(json.dumps({"key": k, "value": v}).encode() + b"\n" for k, v in lines)


BODIES = st.one_of(
    st.just(b""),
    st.binary(max_size=200),
    JSON.map(lambda v: json.dumps(v).encode()),
    st.lists(
        st.tuples(st.sampled_from(["header", "file", "lfsFile", "deletedFile", "deletedFolder", "x"]), JSON),
        max_size=4,
    ).map(_ndjson),
    st.lists(
        st.tuples(
            st.sampled_from(["x.txt", ".GIT/c", "a/b", "\u202eexe.txt", "%00"]), st.binary(max_size=30)
        ),
        max_size=3,
    ).map(
        lambda fs: _ndjson(
            [("header", {"summary": "f"})]
            + [("file", {"path": p, "content": base64.b64encode(d).decode()}) for p, d in fs]
        )
    ),
)

CONTENT_TYPES = st.sampled_from(
    [None, "application/json", "application/x-ndjson", "application/x-www-form-urlencoded",
     "multipart/form-data; boundary=x", "multipart/form-data", "text/plain", "application/json; charset=latin-1"]
)  # fmt: skip

HIDDEN_TEMPLATES = [
    "/api/models/{0}/{1}",
    "/api/models/{0}/{1}/{2}",
    "/api/models/{0}/{1}/{2}/{3}",
    "/api/models/{0}/{1}/{2}/{3}/{4}",
    "/{0}/{1}/resolve/{2}/{3}",
    "/{0}/resolve/{1}/{2}",
    "/{0}/{1}",
    "/{0}/{1}/commit/{2}",
    "/adapters/{0}/{1}",
    "/{0}",
    "/adapters",
    "/tasks",
    "/languages",
    "/models",
    "/upload",
    "/login",
    "/logout",
    "/settings/tokens",
    "/api/datasets/{0}",
]


def _schema_templates(app) -> list[tuple[str, list[str]]]:
    """(path template with {0}, {1}, ... for its path parameters, its query parameter names)."""
    out = []
    for path, ops in app.openapi()["paths"].items():
        names = []
        for op in ops.values():
            names += [p["name"] for p in op.get("parameters", []) if p.get("in") == "query"]
        out.append((_numbered(path), sorted(set(names))))
    return out


def _numbered(path: str) -> str:
    """``/api/tokens/{token_id}`` -> ``/api/tokens/{0}``."""
    counter = iter(range(100))
    return re.sub(r"\{[^}]+\}", lambda _: "{%d}" % next(counter), path)


@pytest.fixture(scope="module")
def fuzz_hub(live_hub):
    from adapterhub.server.app import create_app

    api = live_hub.api("alice")
    api.create_repo("alice/fz")
    api.create_repo("alice/fzp", private=True)
    api.upload_file(path_or_fileobj=b"hello", path_in_repo="d/x.txt", repo_id="alice/fz")
    api.upload_file(
        path_or_fileobj=b"---\nlicense: mit\n---\n# fz\n", path_in_repo="README.md", repo_id="alice/fz"
    )
    templates = _schema_templates(create_app(hub=live_hub.hub)) + [(t, []) for t in HIDDEN_TEMPLATES]
    with httpx.Client(base_url=live_hub.url, timeout=60) as client:
        yield live_hub, templates, client


QUERY_NAMES = ["cursor", "limit", "page", "per_page", "q", "sort", "filter", "expand", "recursive", "identifier",
               "max_file_size", "have", "revision", "next", "blobs", "search", "author", "direction", "full",
               "create_pr", "task", "language", "model_name"]  # fmt: skip


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("ADAPTERHUB_FUZZ_RANDOM") is None,  # the same requests on every CI run
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_generated_request_answers_5xx(fuzz_hub, data):
    live_hub, templates, client = fuzz_hub
    template, declared = data.draw(st.sampled_from(templates), label="template")
    segments = data.draw(st.lists(SEGMENTS, min_size=5, max_size=5), label="segments")
    path = template.format(*(quote(s, safe="%@.-_~") for s in segments))  # "%2F", "%ff" stay as they are
    names = st.sampled_from(declared + QUERY_NAMES)
    query = data.draw(st.lists(st.tuples(names, VALUES), max_size=4), label="query")
    method = data.draw(
        st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]), label="method"
    )
    headers = {}
    who = data.draw(st.sampled_from([None, "alice", "bob", "forged", "malformed"]), label="auth")
    if who in live_hub.tokens:
        headers["Authorization"] = f"Bearer {live_hub.tokens[who]}"
    elif who == "forged":
        headers["Authorization"] = "Bearer ah_forged"
    elif who == "malformed":
        headers["Authorization"] = "Basic x"
    ctype = data.draw(CONTENT_TYPES, label="content-type")
    if ctype:
        headers["Content-Type"] = ctype
    if data.draw(st.booleans(), label="range"):
        headers["Range"] = data.draw(st.sampled_from(["bytes=0-1", "bytes=5-", "bytes=-3", "bytes=9-1", "x"]))
    body = data.draw(BODIES, label="body") if method in ("POST", "PUT", "DELETE", "PATCH") else b""
    try:
        r = client.request(method, path, params=query, headers=headers, content=body)
    except httpx.TransportError as e:
        raise AssertionError(f"{method} {path} {query}: the connection was dropped ({e!r})") from e
    assert r.status_code < 500, (method, path, query, headers, body[:200], r.status_code, r.text[:500])
