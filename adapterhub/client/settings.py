"""Where the hub is, who we are, where the cache lives, whether we may use the network.

Each setting is an argument first, then an environment variable, then a default:

* endpoint: ``endpoint=`` / ``ADAPTERHUB_ENDPOINT`` / ``http://127.0.0.1:8000`` (``adapterhub serve``'s
  default). ``HF_ENDPOINT`` is never read: a process may talk to the Hugging Face Hub and to an adapter hub.
* token: ``token=`` / ``ADAPTERHUB_TOKEN`` / the token saved for *that endpoint* by ``adapterhub login``
  (``$ADAPTERHUB_HOME/tokens.json``, mode 0600). A token is only ever sent to the endpoint it was saved for.
  ``token=False`` sends none.
* offline: ``offline=`` / ``ADAPTERHUB_OFFLINE=1``: only the cache is used.
* cache: ``cache_dir=`` / ``ADAPTERHUB_CACHE`` / ``~/.cache/adapterhub``.
* ref_ttl: ``ADAPTERHUB_REF_TTL`` seconds (default 60): for that long after an identifier naming a branch or
  tag (``org/name``, ``task/subtask@org``) was resolved, a cached snapshot of it is used without asking the hub
  again; 0 always asks. Commit ids never need asking; a push from this machine updates the cache at once.
* verify: ``ADAPTERHUB_VERIFY``: every file is checked against its sha256 when it is downloaded; on later
  uses a cached file is hashed again only if its identity on disk (size, inode, times) changed (``stat``, the
  default) or always (``full``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from urllib.parse import urlsplit

from ..common.files import atomic_write_text
from .errors import IdentifierError

DEFAULT_ENDPOINT = "http://127.0.0.1:8000"
_TRUE = ("1", "true", "yes", "on")


def normalize_endpoint(endpoint: str) -> str:
    """``http://host:port[/prefix]`` without a trailing slash; refuses anything that is not an http(s) URL."""
    url = str(endpoint).strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise IdentifierError(f"hub endpoint {endpoint!r} is not an http(s) URL (e.g. {DEFAULT_ENDPOINT})")
    if parts.query or parts.fragment:
        raise IdentifierError(f"hub endpoint {endpoint!r} must not have a query or fragment")
    return f"{parts.scheme}://{parts.netloc.lower()}{parts.path}"


def home_dir() -> Path:
    return Path(os.environ.get("ADAPTERHUB_HOME") or Path.home() / ".adapterhub").expanduser()


def token_file() -> Path:
    return home_dir() / "tokens.json"


def default_cache_dir() -> Path:
    env = os.environ.get("ADAPTERHUB_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "adapterhub"


def read_saved_tokens() -> dict[str, str]:
    path = token_file()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def save_token(endpoint: str, token: str | None) -> Path:
    """Store (or, with ``token=None``, forget) the token for ``endpoint``; atomic, readable by the owner only."""
    endpoint = normalize_endpoint(endpoint)
    tokens = read_saved_tokens()
    if token is None:
        tokens.pop(endpoint, None)
    else:
        tokens[endpoint] = token
    path = token_file()
    atomic_write_text(path, json.dumps(tokens, indent=2, sort_keys=True))  # readable by the owner only
    return path


@dataclasses.dataclass(frozen=True)
class HubSettings:
    endpoint: str
    token: str | None
    offline: bool
    cache_dir: Path
    ref_ttl: float = 60.0
    verify_full: bool = False  # ADAPTERHUB_VERIFY=full: hash every cached file on every use

    def __repr__(self) -> str:  # never print a token
        return (
            f"HubSettings(endpoint={self.endpoint!r}, token={'***' if self.token else None}, "
            f"offline={self.offline}, cache_dir={str(self.cache_dir)!r}, ref_ttl={self.ref_ttl})"
        )


def resolve_settings(
    endpoint: str | None = None,
    token: str | bool | None = None,
    offline: bool | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> HubSettings:
    ep = normalize_endpoint(endpoint or os.environ.get("ADAPTERHUB_ENDPOINT") or DEFAULT_ENDPOINT)
    if token is False:
        tok = None
    elif isinstance(token, str) and token:
        tok = token
    else:
        tok = os.environ.get("ADAPTERHUB_TOKEN") or read_saved_tokens().get(ep)
    if offline is None:
        offline = os.environ.get("ADAPTERHUB_OFFLINE", "").strip().lower() in _TRUE
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    try:
        ttl = float(os.environ.get("ADAPTERHUB_REF_TTL", "60"))
    except ValueError:
        raise IdentifierError(
            f"ADAPTERHUB_REF_TTL={os.environ['ADAPTERHUB_REF_TTL']!r} is not a number of seconds"
        ) from None
    raw = os.environ.get("ADAPTERHUB_VERIFY", "")
    verify = raw.strip().lower()
    if verify not in ("", "full", "stat"):
        raise IdentifierError(
            f"ADAPTERHUB_VERIFY={raw!r}: expected 'full' (hash every cached file on every use) "
            "or 'stat' (the default: hash files whose identity on disk changed)"
        )
    return HubSettings(ep, tok or None, bool(offline), cache, max(0.0, ttl), verify == "full")
