"""CSRF protection of the web forms: the one check every state-changing form goes through.

Two independent conditions, both required for a ``POST`` from a browser form:

1. **Same origin.** The ``Origin`` header (or, without one, the ``Referer``) must be the hub itself: the
   request's own scheme, host and port, or ``ADAPTERHUB_PUBLIC_URL``. ``Origin: null`` (a sandboxed file, a
   ``data:`` page) is refused. ``SameSite`` cookies alone are not enough: two ports of one host are the same
   *site*, so a page on ``host:8001`` could post to a hub on ``host:8000`` with the hub's cookies.
2. **A token bound to this browser.** Pages with a form set an ``ah_csrf`` cookie (random, HttpOnly) and put
   ``HMAC(secret, cookie)`` in a hidden ``csrf_token`` field; the post must carry both, matching. Another site
   can neither read the field nor compute it (the key is the hub's ``secret_key``).

Use: ``form = await csrf.verified_form(request)`` in a POST handler (it checks the origin *before* reading the
body), ``csrf.form_token(request)`` / ``csrf.attach_cookie(...)`` when rendering (``ui.render`` does both:
templates write ``{{ csrf_field }}``). A failed check raises :class:`CsrfError` (answered 403).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from urllib.parse import urlsplit

from fastapi import Request
from markupsafe import Markup, escape

from adapterhub.server.errors import CsrfError

COOKIE = "ah_csrf"
FIELD = "csrf_token"
_SEED = re.compile(r"^[A-Za-z0-9_\-]{32,64}$")


def _sign(request: Request, seed: str) -> str:
    return hmac.new(request.app.state.hub.secret, b"csrf|" + seed.encode(), hashlib.sha256).hexdigest()


def _seed(request: Request) -> str | None:
    seed = request.cookies.get(COOKIE)
    return seed if seed and _SEED.match(seed) else None


def form_token(request: Request) -> tuple[str, str | None]:
    """(the token for this browser's forms, a new cookie value to set, or None if it has one already)."""
    seed = _seed(request)
    new = None
    if seed is None:
        seed = new = secrets.token_urlsafe(32)
    return _sign(request, seed), new


def hidden_field(token: str) -> Markup:
    return Markup(f'<input type="hidden" name="{FIELD}" value="{escape(token)}">')


def attach_cookie(request: Request, response, seed: str | None = None) -> str:
    """Set the ``ah_csrf`` cookie (``seed``, or a new one: after a login, so a planted value dies)."""
    seed = seed or secrets.token_urlsafe(32)
    response.set_cookie(COOKIE, seed, httponly=True, samesite="strict", secure=is_https(request), path="/")
    return seed


def is_https(request: Request) -> bool:
    public = request.app.state.hub.settings.public_url
    return request.url.scheme == "https" or public.lower().startswith("https://")


def _origin(url: str) -> str | None:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def own_origins(request: Request) -> set[str]:
    """The hub's origin as this request reached it, and as ``public_url`` names it."""
    out = {_origin(str(request.base_url))}
    public = request.app.state.hub.settings.public_url
    if public:
        out.add(_origin(public))
    return {o for o in out if o}


def check_origin(request: Request) -> None:
    """Raise :class:`CsrfError` if the browser says the request comes from another origin."""
    origin = request.headers.get("origin")
    source = origin if origin is not None else request.headers.get("referer")
    if source is None:
        return  # not sent by a browser form (browsers send Origin with every cross-origin POST)
    if _origin(source) not in own_origins(request):
        raise CsrfError(
            f"refused: this form was sent from {source.strip()[:100] or 'an unknown page'}, not from this hub"
        )


def check_token(request: Request, form) -> None:
    seed = _seed(request)
    sent = form.get(FIELD)
    if seed is None or not isinstance(sent, str) or not hmac.compare_digest(sent, _sign(request, seed)):
        raise CsrfError(
            "refused: the form's security token is missing or out of date; reload the page and submit again"
        )


async def verified_form(request: Request, **form_options):
    """The request's form, after both CSRF checks (origin before the body is read, then the token)."""
    check_origin(request)
    form = await request.form(**form_options)
    try:
        check_token(request, form)
    except CsrfError:
        await form.close()  # uploaded files spooled to disk go at once
        raise
    return form
