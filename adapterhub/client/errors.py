"""Errors of the hub client. Every message names the identifier, the hub and what to do about it."""

from __future__ import annotations

from adapterhub.library.errors import AdapterError, AdapterLoadError


class HubClientError(AdapterLoadError):
    """Base class: something went wrong between this process and an adapter hub (or its cache)."""


class IdentifierError(HubClientError, ValueError):
    """An adapter identifier is malformed, or its options contradict each other."""


class NotFoundError(HubClientError):
    """The hub has no such adapter, repository, revision or file."""

    code: str | None = None  # the hub's X-Error-Code (RepoNotFound, RevisionNotFound, ...), if it sent one

    def __init__(self, message: str, candidates: list[str] | None = None):
        self.candidates = list(candidates or [])
        if self.candidates:
            message += "\n  candidates: " + "\n              ".join(self.candidates[:20])
        super().__init__(message)


class AmbiguousIdentifierError(NotFoundError):
    """An identifier matches several adapters; the candidates are listed."""


class IntegrityError(HubClientError):
    """Downloaded (or cached) bytes do not match the sha256 the hub lists for them; nothing was kept."""


class OfflineError(HubClientError):
    """Offline mode (``ADAPTERHUB_OFFLINE=1`` / ``offline=True``) and the cache does not hold what is needed."""


class AuthError(HubClientError, PermissionError):
    """The hub refused the token (or one is needed)."""


class HubHTTPError(HubClientError):
    """The hub answered with an unexpected HTTP error."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.code = status, code
        self.candidates: list[str] = []  # similar adapters the hub named, if any


class ValidationFailedError(HubClientError):
    """The hub refused or flagged a pushed adapter because it does not validate."""


__all__ = [
    "AdapterError",
    "AmbiguousIdentifierError",
    "AuthError",
    "HubClientError",
    "HubHTTPError",
    "IdentifierError",
    "IntegrityError",
    "NotFoundError",
    "OfflineError",
    "ValidationFailedError",
]
