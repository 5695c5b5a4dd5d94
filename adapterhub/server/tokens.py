"""Token management: list, create and revoke your own access tokens, over the API (``Authorization`` header
only, never the login cookie) and on the web page ``/settings/tokens`` (login cookie + CSRF check).

API (also used by ``adapterhub token``):

* ``GET /api/tokens``: the caller's tokens (id, name, scope, createdAt, revoked, current); any token.
* ``POST /api/tokens`` ``{"name": ..., "scope": "read"|"write"}``: a new token, shown once; needs a write token.
* ``DELETE /api/tokens/{id}``: revoke one; needs a write token, except a token revoking itself.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel, Field
from sqlalchemy import select

from adapterhub.server import auth, csrf, sessions
from adapterhub.server.auth import AuthError, Caller
from adapterhub.server.models import Token

router = APIRouter(tags=["tokens"])
NAME_MAX = 100


class NewToken(BaseModel):
    name: str = Field("", max_length=NAME_MAX)
    scope: str = Field("read", pattern="^(read|write)$")


def _api_caller(s, request: Request) -> Caller:
    caller = auth.caller_from_header(s, request.headers.get("authorization"))
    if caller.account is None:
        raise AuthError("authentication required: pass a token (Authorization: Bearer ...)", 401)
    return caller


def _list(s, caller: Caller) -> list[dict]:
    return [auth.token_info(t, caller.token_id) for t in auth.list_tokens(s, caller.account)]


def _create(s, caller: Caller, name: str, scope: str) -> dict:
    account = auth.require_token_manager(caller)
    token = auth.create_token(s, account, scope=scope, name=name.strip() or f"{scope}-token")
    row = s.scalar(select(Token).where(Token.token_hash == auth.hash_token(token)))
    return {**auth.token_info(row, caller.token_id), "token": token}


@router.get("/api/tokens")
def list_tokens(request: Request):
    with request.app.state.hub.db.session() as s:
        return _list(s, _api_caller(s, request))


@router.post("/api/tokens", status_code=201)
def create_token(request: Request, body: NewToken):
    with request.app.state.hub.db.session() as s:
        return JSONResponse(_create(s, _api_caller(s, request), body.name, body.scope), status_code=201)


@router.delete("/api/tokens/{token_id}")
def revoke_token(request: Request, token_id: int):
    with request.app.state.hub.db.session() as s:
        caller = _api_caller(s, request)
        return auth.token_info(auth.revoke_token(s, caller, token_id), caller.token_id)


# --------------------------------------------------------------------------------------------- web page
def page_caller(s, request: Request) -> Caller | None:
    token = sessions.cookie_token(request.cookies)
    if not token:
        return None
    try:
        caller = auth.caller_from_header(s, "Bearer " + token)
    except AuthError:
        return None
    return caller if caller.account is not None else None


def _page(request: Request, status: int = 200, **ctx):
    from adapterhub.server.ui import render

    with request.app.state.hub.db.session() as s:
        caller = page_caller(s, request)
        if caller is None:
            return None
        tokens = _list(s, caller)
        scope = caller.scope
    return render(request, "tokens.html", status=status, tokens=tokens, session_scope=scope, **ctx)


@router.get("/settings/tokens", include_in_schema=False)
def tokens_page(request: Request):
    page = _page(request)
    return page if page is not None else RedirectResponse("/login?next=/settings/tokens", status_code=303)


@router.post("/settings/tokens", include_in_schema=False)
async def tokens_form(request: Request):
    """One form action per post: ``create`` (name, scope) or ``revoke`` (id)."""
    form = await csrf.verified_form(request)
    action, hub = str(form.get("action") or ""), request.app.state.hub

    def apply() -> tuple[dict, int]:
        with hub.db.session() as s:
            caller = page_caller(s, request)
            if caller is None:
                raise AuthError("log in to manage your tokens", 401)
            if action == "create":
                name, scope = str(form.get("name") or "")[:NAME_MAX], str(form.get("scope") or "read")
                if scope not in ("read", "write"):
                    return {"error": f"unknown scope {scope!r}"}, 400
                return {"created": _create(s, caller, name, scope)}, 201
            if action == "revoke":
                try:
                    token_id = int(str(form.get("id") or ""))
                except ValueError:
                    return {"error": "no token id given"}, 400
                revoked = auth.revoke_token(s, caller, token_id)
                return {"message": f"Token {revoked.name!r} revoked."}, 200
            return {"error": f"unknown action {action!r}"}, 400

    try:
        ctx, status = await run_in_threadpool(apply)
    except AuthError as e:
        if e.status == 401:
            return RedirectResponse("/login?next=/settings/tokens", status_code=303)
        ctx, status = {"error": e.message}, e.status
    page = _page(request, status=status, **ctx)
    if page is None:  # the session's own token was just revoked
        resp = RedirectResponse("/login?next=/settings/tokens", status_code=303)
        sessions.log_out(request, resp)
        return resp
    return page
