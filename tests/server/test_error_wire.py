"""The hub's one error hierarchy and wire format (``adapterhub.server.errors``): each error answers with its
status, the HF Hub's JSON body and ``X-Error-Code`` / ``X-Error-Message`` headers, and huggingface_hub turns
the answer into its own exception for that meaning."""

import json
import re
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from huggingface_hub import errors as hf_errors
from huggingface_hub.utils import hf_raise_for_status

from adapterhub.server import errors

COMMIT = "ab" * 20


def _client(exc: Exception) -> TestClient:
    app = FastAPI()
    errors.install(app)

    @app.api_route("/raise", methods=["GET", "HEAD", "POST"])
    def raising():
        raise exc

    @app.post("/json")
    def parse():
        return json.loads(b"{not json")

    return TestClient(app)


@pytest.mark.parametrize(
    "exc, status, code, hf_error",
    [
        (errors.RepoNotFound("Repository Not Found for a/b"), 404, "RepoNotFound", hf_errors.RepositoryNotFoundError),
        (errors.RevisionNotFound("Invalid rev id: v9"), 404, "RevisionNotFound", hf_errors.RevisionNotFoundError),
        (errors.EntryNotFound("Entry not found: x.json", commit=COMMIT), 404, "EntryNotFound",
         hf_errors.EntryNotFoundError),
        (errors.BadRequest("not a number: 'x'"), 400, "BadRequest", hf_errors.BadRequestError),
        (errors.NotFound("unknown endpoint"), 404, "NotFound", hf_errors.HfHubHTTPError),
        (errors.Conflict("too many concurrent commits"), 409, "Conflict", hf_errors.HfHubHTTPError),
        (errors.PayloadTooLarge("request body too large"), 413, "PayloadTooLarge", hf_errors.HfHubHTTPError),
        (errors.AuthError("Invalid user token"), 401, "Unauthorized", hf_errors.HfHubHTTPError),
        (errors.AuthError("a read-only token", 403), 403, "Forbidden", hf_errors.HfHubHTTPError),
        (errors.AuthError("no token 7 of alice", 404), 404, "NotFound", hf_errors.HfHubHTTPError),
        (errors.UploadError("upload refused: bad card", 422, "ValidationFailed"), 422, "ValidationFailed",
         hf_errors.HfHubHTTPError),
        (errors.UploadError("empty file path"), 400, "BadUpload", hf_errors.BadRequestError),
        (errors.HubError("blob missing from storage", 500, "BlobMissing"), 500, "BlobMissing",
         hf_errors.HfHubHTTPError),
    ],
)  # fmt: skip
def test_each_error_answers_in_the_hf_wire_format_and_maps_to_the_hf_exception(exc, status, code, hf_error):
    r = _client(exc).get("/raise")
    assert r.status_code == status
    assert r.json() == {"error": exc.message}
    assert r.headers["x-error-code"] == code
    assert r.headers["x-error-message"] == exc.message
    assert r.headers.get("x-repo-commit") == (COMMIT if code == "EntryNotFound" else None)
    with pytest.raises(hf_error) as raised:
        hf_raise_for_status(r)
    assert exc.message in str(raised.value)
    if hf_error is hf_errors.HfHubHTTPError:  # no more specific class took it
        assert type(raised.value) is hf_errors.HfHubHTTPError


def test_every_error_is_one_hub_error():
    for cls in (
        errors.RepoNotFound,
        errors.EntryNotFound,
        errors.AuthError,
        errors.UploadError,
        errors.CsrfError,
    ):
        assert issubclass(cls, errors.HubError)
    assert issubclass(errors.RepoNotFound, errors.NotFound)


def test_a_head_request_gets_the_headers_and_no_body():
    r = _client(errors.EntryNotFound("Entry not found: head_config.json", commit=COMMIT)).head("/raise")
    assert r.status_code == 404 and r.content == b""
    assert r.headers["content-length"] == "0"
    assert r.headers["x-error-code"] == "EntryNotFound" and r.headers["x-repo-commit"] == COMMIT


def test_extra_fields_join_the_body():
    """A 409 on repository creation names the existing repository's URL (huggingface_hub reads it)."""
    exc = errors.HubError(
        "You already created this model repo: a/b", 409, "RepoExists", extra={"url": "http://h/a/b"}
    )
    r = _client(exc).post("/raise")
    assert r.status_code == 409 and r.json() == {"error": exc.message, "url": "http://h/a/b"}
    assert r.headers["x-error-code"] == "RepoExists"


def test_a_message_with_control_or_non_ascii_characters_stays_a_valid_header():
    exc = errors.NotFound("Not Found: /a\nb\x00c/é" + "x" * 2000)
    r = _client(exc).get("/raise")
    assert r.status_code == 404 and r.json()["error"] == exc.message  # the body keeps the message whole
    header = r.headers["x-error-message"]
    assert header.startswith("Not Found: /a b c/?") and len(header) == 1000
    assert all(" " <= c < "\x7f" for c in header)


def test_a_csrf_refusal_is_a_small_html_page_with_the_message_escaped():
    r = _client(errors.CsrfError("the form's <token> is missing")).post("/raise")
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("text/html")
    assert "the form&#39;s &lt;token&gt; is missing" in r.text and "<token>" not in r.text


def test_a_body_that_is_not_json_is_a_bad_request():
    r = _client(errors.HubError("unused")).post("/json", content=b"x")
    assert r.status_code == 400 and r.headers["x-error-code"] == "BadRequest"
    assert r.json()["error"].startswith("the request body is not valid JSON")


def test_only_errors_py_writes_the_error_headers():
    """One wire format: other server modules raise a HubError (or call errors.error_response) instead of
    writing X-Error-Code themselves or raising FastAPI's HTTPException (whose body is {"detail": ...})."""
    server = Path(errors.__file__).parent
    writers = sorted(
        p.name
        for p in server.glob("*.py")
        if p.name != "errors.py" and re.search(r"x-error-code|HTTPException", p.read_text(), re.I)
    )
    assert writers == []
