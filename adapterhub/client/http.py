"""A small synchronous HTTP client for one adapter hub: the Hugging Face wire protocol (model info, tree,
resolve, create_repo, NDJSON commit, tags, whoami) plus the hub's own search and resolve API.

Only httpx; the endpoint and token come from :mod:`adapterhub.client.settings`, never from ``HF_ENDPOINT``.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import ssl
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from ..common.wire import COMMIT_RE, REPO_ID_RE
from ..version import __version__
from . import lean
from .errors import (
    AmbiguousIdentifierError,
    AuthError,
    HubHTTPError,
    IdentifierError,
    NotFoundError,
    ValidationFailedError,
)
from .lean import LeanConnection, LeanResponse
from .progress import progress_bar
from .settings import HubSettings, resolve_settings

TIMEOUT = httpx.Timeout(60.0, connect=10.0)


def check_repo_id(repo_id: str) -> str:
    if (
        not isinstance(repo_id, str)
        or not REPO_ID_RE.match(repo_id)
        or "--" in repo_id
        or ".." in repo_id
        or repo_id.endswith(".git")
    ):
        raise IdentifierError(
            f"invalid repository id {repo_id!r}: expected 'namespace/name' (letters, digits, '.', '_', '-')"
        )
    return repo_id


def _is_resolve_error(response: httpx.Response | LeanResponse) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and "candidates" in body


def _q(value: str) -> str:
    return quote(value, safe="")


@functools.lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    """One TLS context per process: building one loads the CA bundle (~75 ms), too slow for every call."""
    return ssl.create_default_context()


_SHARED: dict[tuple[str, str | None], HubClient] = {}  # at most SHARED_LIMIT, oldest dropped first
_SHARED_LOCK = threading.Lock()
SHARED_LIMIT = 16


def _forget_after_fork() -> None:
    global _SHARED_LOCK
    _SHARED.clear()  # a forked child must not share the parent's sockets
    _SHARED_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


class HubClient:
    """One hub (endpoint + token). Use as a context manager or call :meth:`close`; :meth:`shared` gives a
    process-wide client per (endpoint, token) that keeps its connections open between calls."""

    def __init__(self, settings: HubSettings | None = None, **kwargs: Any):
        self.settings = settings or resolve_settings(**kwargs)
        self.endpoint = self.settings.endpoint
        headers = {"user-agent": f"adapterhub/{__version__}"}
        if self.settings.token:
            headers["authorization"] = f"Bearer {self.settings.token}"
        tls = _ssl_context() if self.endpoint.startswith("https:") else None
        self._no_bundle = False
        self._http = httpx.Client(
            base_url=self.endpoint,
            headers=headers,
            timeout=TIMEOUT,
            follow_redirects=False,
            verify=tls or False,
        )
        self._lean = LeanConnection(self.endpoint, headers, tls) if lean.usable(self.endpoint) else None

    @classmethod
    def shared(cls, settings: HubSettings) -> HubClient:
        key = (settings.endpoint, settings.token)
        with _SHARED_LOCK:
            client = _SHARED.get(key)
            if client is None or client._http.is_closed:
                _SHARED.pop(key, None)
                while len(_SHARED) >= SHARED_LIMIT:  # dropped, not closed: a thread may still be using it
                    del _SHARED[next(iter(_SHARED))]
                client = _SHARED[key] = cls(settings)
            return client

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()
        if self._lean is not None:
            self._lean.close()

    # ------------------------------------------------------------------------------------------ plumbing
    def raw(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; any status comes back, a transport failure is a clear HubHTTPError."""
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TransportError as error:
            raise HubHTTPError(
                f"cannot reach the adapter hub at {self.endpoint} ({type(error).__name__}: {error}); is it running? "
                "Set ADAPTERHUB_ENDPOINT or pass endpoint=..., or use the cache with ADAPTERHUB_OFFLINE=1"
            ) from None

    def request(self, method: str, path: str, *, what: str = "", **kwargs: Any) -> httpx.Response:
        response = self.raw(method, path, **kwargs)
        if response.status_code >= 400:
            response.read()
            raise self.error_for(response, what or f"{method} {path}")
        return response

    def error_for(self, response: httpx.Response, what: str) -> Exception:
        code = response.headers.get("x-error-code")
        message = response.headers.get("x-error-message") or ""
        candidates: list[str] = []
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            message = str(body.get("error") or body.get("detail") or message)
            candidates = [str(c) for c in body.get("candidates") or []]
        status = response.status_code
        text = f"{what}: {message or response.reason_phrase} (hub {self.endpoint}, HTTP {status}"
        text += f", {code})" if code else ")"
        if status == 404:
            if code == "RepoNotFound" and not self.settings.token:
                text += "; if the repository is private, pass token=... or run `adapterhub login`"
            error = NotFoundError(text, candidates)
            error.code = code  # None: the server is no hub (a 404 without X-Error-Code)
            return error
        if status in (401, 403):
            hint = (
                ""
                if self.settings.token
                else "; no token was sent: pass token=..., set ADAPTERHUB_TOKEN or run `adapterhub login`"
            )
            return AuthError(text + hint)
        if status == 400:
            return IdentifierError(text)
        if status == 422:
            return ValidationFailedError(text)
        if status == 409 and candidates:
            return AmbiguousIdentifierError(text, candidates)
        failure = HubHTTPError(text, status, code)
        failure.candidates = candidates
        return failure

    def json(self, method: str, path: str, *, what: str = "", **kwargs: Any) -> Any:
        response = self.request(method, path, what=what, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise HubHTTPError(f"{what or path}: the hub at {self.endpoint} did not answer JSON") from None

    # ------------------------------------------------------------------------------------------ reading
    def model_info(self, repo_id: str, revision: str | None = None, blobs: bool = True) -> dict:
        check_repo_id(repo_id)
        path = f"/api/models/{repo_id}" + (f"/revision/{_q(revision)}" if revision else "")
        info = self.json(
            "GET", path, params={"blobs": "true"} if blobs else None, what=f"{repo_id}@{revision or 'main'}"
        )
        if not isinstance(info, dict) or not COMMIT_RE.match(str(info.get("sha", ""))):
            raise HubHTTPError(
                f"{repo_id}@{revision or 'main'}: the hub's model info has no commit id ('sha')"
            )
        return info

    def list_tree(self, repo_id: str, revision: str) -> list[dict]:
        """Every file of ``revision`` (recursive), following ``Link: rel="next"`` pagination."""
        return self.tree_with_commit(repo_id, revision)[1]

    def tree_with_commit(self, repo_id: str, revision: str) -> tuple[str | None, list[dict]]:
        """(commit the hub resolved ``revision`` to, from ``X-Repo-Commit`` if sent; every file, recursive)."""
        check_repo_id(repo_id)
        url: str | None = f"/api/models/{repo_id}/tree/{_q(revision)}"
        params: dict | None = {"recursive": "true", "expand": "false"}
        files: list[dict] = []
        commit = None
        while url:
            response = self.request("GET", url, params=params, what=f"file list of {repo_id}@{revision}")
            commit = commit or response.headers.get("x-repo-commit")
            page = response.json()
            files += [e for e in page if isinstance(e, dict) and e.get("type") == "file"]
            url = response.links.get("next", {}).get("url")
            params = None
        return (commit if commit and COMMIT_RE.match(commit) else None), files

    def resolve_identifier(
        self,
        identifier: str,
        model_name: str | None = None,
        config: str | None = None,
        version: str | None = None,
    ) -> dict | None:
        """The hub's ``/api/adapters/resolve``; None when this hub has no resolve API (a plain HF server)."""
        params = {
            k: v
            for k, v in dict(
                identifier=identifier, model_name=model_name, config=config, version=version
            ).items()
            if v
        }
        response = self.raw("GET", "/api/adapters/resolve", params=params)
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code == 200 and isinstance(body, dict):
            return body
        if response.status_code in (404, 405) and not _is_resolve_error(response):
            return None  # no resolve API on this hub
        raise self.error_for(response, f"resolving {identifier!r}")

    @contextlib.contextmanager
    def bundle(
        self,
        identifier: str,
        model_name: str | None = None,
        config: str | None = None,
        version: str | None = None,
        max_file_size: int | None = None,
        have: Iterable[str] = (),
    ) -> Iterator[httpx.Response | LeanResponse | None]:
        """The hub's ``/api/adapters/bundle`` (resolution + files of the commit as a tar) as a streamed response
        (through :mod:`.lean` where no proxy applies); ``have``: commits held complete in the cache, which the hub
        then does not send again. None when the hub has no such API or answers with an error: the caller then
        asks the resolve API, whose answer explains the error (or finds a plain repository that is no indexed
        adapter)."""
        if self._no_bundle:
            yield None
            return
        params = {
            k: v
            for k, v in dict(
                identifier=identifier,
                model_name=model_name,
                config=config,
                version=version,
                max_file_size=max_file_size,
                have=",".join(have) or None,
            ).items()
            if v is not None
        }
        stream = self._lean.get if self._lean is not None else functools.partial(self._http.stream, "GET")
        try:
            with stream(
                "/api/adapters/bundle", params=params, headers={"accept-encoding": "identity"}
            ) as response:
                kind = response.headers.get("content-type", "").split(";")[0].strip()
                if response.status_code == 200 and kind == "application/x-tar":
                    yield response
                    return
                response.read()
                if response.status_code in (404, 405) and not _is_resolve_error(response):
                    self._no_bundle = True  # a plain HF hub: do not ask again
                yield None
        except (httpx.TransportError, lean.TransportError) as error:
            raise HubHTTPError(
                f"download of {identifier!r} from {self.endpoint} broke off: {error}"
            ) from None

    def search(self, **params: Any) -> dict:
        clean = {k: v for k, v in params.items() if v is not None and v != ""}
        for key, value in list(clean.items()):
            if isinstance(value, bool):
                clean[key] = "true" if value else "false"
        return self.json("GET", "/api/adapters", params=clean, what="adapter search")

    @contextlib.contextmanager
    def stream_file(self, repo_id: str, commit: str, path: str, start: int = 0) -> Iterator[httpx.Response]:
        """GET the bytes of one file (from byte ``start`` when resuming); the response is a 200 or a 206."""
        url = f"/{repo_id}/resolve/{commit}/{quote(path)}"
        headers = {"accept-encoding": "identity"}
        if start:
            headers["range"] = f"bytes={start}-"
        try:
            with self._http.stream("GET", url, headers=headers) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self.error_for(response, f"{repo_id}@{commit[:12]}: {path}")
                if response.is_redirect:
                    with self._from_storage(response, headers, f"{repo_id}@{commit[:12]}: {path}") as stored:
                        yield stored
                    return
                yield response
        except httpx.TransportError as error:
            raise HubHTTPError(
                f"download of {path} from {repo_id} at {self.endpoint} broke off: {error}"
            ) from None

    @contextlib.contextmanager
    def _from_storage(self, redirect: httpx.Response, headers: dict, what: str) -> Iterator[httpx.Response]:
        """Follow the hub's redirect of a download to its object store (a presigned URL): fetched without the
        hub's token (the URL carries its own signature), with the hub's metadata headers (sha256 ETag, commit)
        in place of the store's."""
        location = redirect.headers.get("location", "")
        if not location.startswith(("https://", "http://")):
            raise HubHTTPError(f"{what}: the hub redirected the download to {location!r}, not an http(s) URL")
        try:
            with httpx.stream(
                "GET",
                location,
                headers=headers,
                timeout=TIMEOUT,
                follow_redirects=True,
                verify=_ssl_context(),
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise HubHTTPError(
                        f"{what}: the storage the hub redirected to answered {response.status_code}: "
                        f"{response.text[:300]}"
                    )
                for key in ("x-linked-etag", "x-repo-commit"):
                    if key in redirect.headers:
                        response.headers[key] = redirect.headers[key]
                yield response
        except httpx.TransportError as error:
            raise HubHTTPError(
                f"{what}: download from the hub's storage {location.split('?')[0]} broke off: {error}"
            ) from None

    def whoami(self) -> dict:
        return self.json("GET", "/api/whoami-v2", what="whoami")

    # ---------------------------------------------------------------------------------------- tokens
    def list_tokens(self) -> list[dict]:
        """The caller's tokens: id, name, scope, createdAt, revoked, current (never the secret)."""
        return self.json("GET", "/api/tokens", what="list tokens")

    def create_token(self, name: str = "", scope: str = "read") -> dict:
        """A new token of the caller (needs a write token); ``token`` holds its value, shown only this once."""
        return self.json("POST", "/api/tokens", json={"name": name, "scope": scope}, what="create a token")

    def revoke_token(self, token_id: int) -> dict:
        return self.json("DELETE", f"/api/tokens/{int(token_id)}", what=f"revoke token {token_id}")

    # ------------------------------------------------------------------------------------------ writing
    def create_repo(self, repo_id: str, private: bool = False, exist_ok: bool = True) -> str:
        check_repo_id(repo_id)
        namespace, name = repo_id.split("/")
        body = {
            "name": name,
            "organization": namespace,
            "type": "model",
            "visibility": "private" if private else "public",
            "private": private,
        }
        response = self.raw("POST", "/api/repos/create", json=body)
        if response.status_code == 409 and exist_ok:
            return repo_id
        if response.status_code >= 400:
            raise self.error_for(response, f"creating {repo_id}")
        return repo_id

    def commit(
        self,
        repo_id: str,
        files: dict[str, bytes | Path],
        message: str,
        branch: str = "main",
        description: str = "",
        deletions: Iterable[str] = (),
        parent_commit: str | None = None,
        timeout: float | None = None,
        progress: bool | None = None,
    ) -> dict:
        """One NDJSON commit with the content inline (the hub answers ``regular`` to preupload)."""
        check_repo_id(repo_id)
        header: dict[str, Any] = {"summary": message, "description": description}
        if parent_commit:
            header["parentCommit"] = parent_commit

        def lines() -> Iterator[bytes]:
            yield json.dumps({"key": "header", "value": header}).encode() + b"\n"
            for path in sorted(files):
                data = files[path]
                raw = Path(data).read_bytes() if isinstance(data, Path) else bytes(data)
                value = {"path": path, "encoding": "base64", "content": base64.b64encode(raw).decode()}
                yield json.dumps({"key": "file", "value": value}).encode() + b"\n"
            for path in deletions:
                yield json.dumps({"key": "deletedFile", "value": {"path": path}}).encode() + b"\n"

        body = b"".join(lines())
        with progress_bar(progress, len(body), f"upload {repo_id}") as advance:

            def chunks() -> Iterator[bytes]:
                for start in range(0, len(body), 256 * 1024):
                    piece = body[start : start + 256 * 1024]
                    yield piece
                    advance(len(piece))

            return self.json(
                "POST",
                f"/api/models/{repo_id}/commit/{_q(branch)}",
                content=chunks(),
                headers={"content-type": "application/x-ndjson", "content-length": str(len(body))},
                timeout=httpx.Timeout(timeout or 600.0, connect=10.0),
                what=f"commit to {repo_id}@{branch}",
            )

    def create_tag(self, repo_id: str, tag: str, revision: str = "main", message: str = "") -> None:
        check_repo_id(repo_id)
        self.request(
            "POST",
            f"/api/models/{repo_id}/tag/{_q(revision)}",
            json={"tag": tag, "message": message},
            what=f"tagging {repo_id}@{revision} as {tag!r}",
        )
