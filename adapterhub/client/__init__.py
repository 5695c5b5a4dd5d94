"""The hub client: find, download (verified, cached), push and search adapters on an adapter hub.

Separate from the library (which never imports it: importing the client registers its resolver and push
functions with the library, see :mod:`adapterhub.library.remote`) and from the server (never imported here: the
client talks HTTP only).

Functions for programs (the quickstart, notebooks):

* ``adapter_folder(identifier, ...) -> Path``: resolve + download + verify + cache; what
  ``model.load_adapter(identifier)`` uses.
* ``resolve(identifier, ...) -> Pinned``: the repository and commit an identifier names, nothing downloaded.
* ``push_adapter(model, repo_id, name, ...)``, ``push_adapter_setup(...)``, ``push_folder(folder, repo_id)``,
  ``push_base_model(model, repo_id)``: publish (``model.push_adapter_to_hub`` calls ``push_adapter``).
* ``list_adapters(q, **facets)``, ``search_adapters(...)``, ``adapter_info(identifier)``: find.
* ``login(token, endpoint)``: check a token against the hub and save it for that endpoint.
* ``local_hub(data_dir, user=...)`` / ``start_local_hub``: ``adapterhub serve`` in a child process on
  127.0.0.1 with a user and a write token (the embedded hub of the quickstart).
"""

from __future__ import annotations

from ..library import remote as _remote
from .cache import Cache
from .errors import (
    AmbiguousIdentifierError,
    AuthError,
    HubClientError,
    HubHTTPError,
    IdentifierError,
    IntegrityError,
    NotFoundError,
    OfflineError,
    ValidationFailedError,
)
from .http import HubClient
from .local import LocalHub, local_hub, start_local_hub
from .push import PushResult, card_text, push_adapter, push_adapter_setup, push_base_model, push_folder
from .resolve import Pinned, adapter_folder, parse_identifier, resolve
from .search import AdapterSummary, SearchResult, adapter_info, list_adapters, search_adapters
from .settings import HubSettings, resolve_settings, save_token

_remote.register(
    adapter_folder=adapter_folder, push_adapter=push_adapter, push_adapter_setup=push_adapter_setup
)


def login(token: str, endpoint: str | None = None) -> dict:
    """Check ``token`` with the hub (``/api/whoami-v2``) and save it for ``endpoint``; returns the hub's answer."""
    settings = resolve_settings(endpoint=endpoint, token=token, offline=False)
    with HubClient(settings) as client:
        who = client.whoami()
    save_token(settings.endpoint, token)
    return who


__all__ = [
    "AdapterSummary",
    "AmbiguousIdentifierError",
    "AuthError",
    "Cache",
    "HubClient",
    "HubClientError",
    "HubHTTPError",
    "HubSettings",
    "IdentifierError",
    "IntegrityError",
    "LocalHub",
    "NotFoundError",
    "OfflineError",
    "Pinned",
    "PushResult",
    "SearchResult",
    "ValidationFailedError",
    "adapter_folder",
    "adapter_info",
    "card_text",
    "list_adapters",
    "local_hub",
    "login",
    "parse_identifier",
    "push_adapter",
    "push_adapter_setup",
    "push_base_model",
    "push_folder",
    "resolve",
    "resolve_settings",
    "save_token",
    "search_adapters",
    "start_local_hub",
]
