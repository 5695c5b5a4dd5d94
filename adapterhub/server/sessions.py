"""The web UI's login: a hub token kept in an HttpOnly cookie (``ah_token``).

The cookie authenticates *reads* only: pages, searches and file downloads (``GET``/``HEAD``), and the web
forms, which pass the CSRF check (``csrf.py``). The HF-protocol and JSON APIs that change anything take the
``Authorization`` header alone, so no other site can make a browser act through them with the cookie.
Revoking the token (``adapterhub token revoke``, the API or the tokens page) ends every session that uses it.
"""

from __future__ import annotations

from fastapi import Request

from adapterhub.server import csrf

TOKEN_COOKIE = "ah_token"
MAX_AGE = 30 * 86400


def cookie_token(cookies) -> str | None:
    token = cookies.get(TOKEN_COOKIE)
    return token.strip() if token and token.strip() else None


def read_authorization(request: Request) -> str | None:
    """The ``Authorization`` header, or, for ``GET``/``HEAD`` only, the login cookie as one."""
    header = request.headers.get("authorization")
    if header or request.method not in ("GET", "HEAD"):
        return header
    token = cookie_token(request.cookies)
    return "Bearer " + token if token else None


def log_in(request: Request, response, token: str) -> None:
    """Set the login cookie (and a fresh CSRF cookie, so a value planted before the login is worthless)."""
    response.set_cookie(
        TOKEN_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=csrf.is_https(request),
        max_age=MAX_AGE,
        path="/",
    )
    csrf.attach_cookie(request, response)


def log_out(request: Request, response) -> None:
    response.delete_cookie(
        TOKEN_COOKIE, path="/", secure=csrf.is_https(request), httponly=True, samesite="strict"
    )
    csrf.attach_cookie(request, response)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "-"
