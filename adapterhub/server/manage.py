"""Managing repositories and organisations in the browser, for the logged-in user (login cookie):

* ``/new``: create a repository in one's own namespace or an organisation's (public or private);
* ``/adapters/{namespace}/{name}/settings``: visibility, tags and branches (create at a revision, delete),
  and deleting the repository, which asks for its name to be typed as confirmation;
* ``/orgs/{org}/members``: the members of an organisation and their roles; its admins add, change and
  remove members.

Every form is CSRF-checked (``csrf.verified_form``) and every change goes through the same functions and
permission checks as the Hugging Face API (``repos.create_repo`` / ``create_ref`` / ``delete_ref`` /
``delete_repo`` / ``update_repo_settings``, ``auth.add_member``); nothing here decides access on its own
except the organisation admin rule for members.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from adapterhub.server import csrf, repos
from adapterhub.server.auth import Caller, add_member
from adapterhub.server.errors import AuthError, BadRequest, HubError, RepoNotFound
from adapterhub.server.models import Account, Membership, Ref
from adapterhub.server.tokens import page_caller
from adapterhub.server.ui import not_found, render, visible_repo

router = APIRouter(include_in_schema=False)
ROLES = ("read", "write", "admin")


def _login(next_path: str) -> RedirectResponse:
    return RedirectResponse(f"/login?next={quote(next_path)}", status_code=303)


def _namespaces(s, caller: Caller) -> list[str]:
    """Where the caller may create repositories: its own namespace, then organisations it writes to."""
    orgs = [oid for oid, role in caller.orgs.items() if role in ("write", "admin")]
    names = sorted(s.scalars(select(Account.name).where(Account.id.in_(orgs))))
    return [caller.account.name, *names]


# ------------------------------------------------------------------------------------------ new repository
@router.get("/new", response_class=HTMLResponse)
def new_repo_form(request: Request):
    hub = request.app.state.hub
    with hub.db.session() as s:
        caller = page_caller(s, request)
        if caller is None:
            return _login("/new")
        namespaces = _namespaces(s, caller)
    return render(request, "new_repo.html", namespaces=namespaces, form={})


@router.post("/new", response_class=HTMLResponse)
async def new_repo(request: Request):
    form = await csrf.verified_form(request)
    fields = {k: str(form.get(k) or "").strip() for k in ("namespace", "name", "private")}
    hub = request.app.state.hub

    def apply() -> tuple[str | None, str | None, int, list[str]]:
        with hub.db.session() as s:
            caller = page_caller(s, request)
            if caller is None:
                return None, None, 401, []
            namespaces = _namespaces(s, caller)
        if fields["namespace"] not in namespaces:
            return None, f"you cannot create repositories in {fields['namespace']!r}", 403, namespaces
        repo_id = f"{fields['namespace']}/{fields['name']}"
        try:
            repo, created = repos.create_repo(hub, caller, repo_id, private=fields["private"] == "on")
        except HubError as e:
            return None, e.message, e.status, namespaces
        if not created:
            return None, f"{repo_id} already exists", 409, namespaces
        return repo.repo_id, None, 303, namespaces

    repo_id, error, status, namespaces = await run_in_threadpool(apply)
    if status == 401:
        return _login("/new")
    if error is not None:
        return render(
            request, "new_repo.html", status=status, namespaces=namespaces, form=fields, error=error
        )
    return RedirectResponse(f"/adapters/{repo_id}/settings?done=created", status_code=303)


# --------------------------------------------------------------------------------------- repository settings
DONE = {
    "created": "Repository created. Upload files with the upload form or huggingface_hub.",
    "visibility": "Visibility changed.",
    "ref-created": "Created.",
    "ref-deleted": "Deleted.",
}


def _settings_page(request: Request, namespace: str, name: str, status: int = 200, **ctx: Any):
    hub, full = request.app.state.hub, f"{namespace}/{name}"
    with hub.db.session() as s:
        caller = page_caller(s, request)
        if caller is None:
            return _login(f"/adapters/{full}/settings")
        _, repo = visible_repo(s, request, namespace, name, caller)
        if repo is None:
            return not_found(request, f"No repository {full} (or it is private and you are not its owner).")
        refs = list(s.scalars(select(Ref).where(Ref.repo_id == repo.id).order_by(Ref.kind, Ref.name)))
        private = repo.private
    done = DONE.get(request.query_params.get("done") or "")
    return render(
        request, "repo_settings.html", status=status, full=full, private=private, refs=refs, done=done, **ctx
    )


@router.get("/adapters/{namespace}/{name}/settings", response_class=HTMLResponse)
def settings_page(namespace: str, name: str, request: Request):
    return _settings_page(request, namespace, name)


@router.post("/adapters/{namespace}/{name}/settings", response_class=HTMLResponse)
async def settings_form(namespace: str, name: str, request: Request):
    """One action per post: ``visibility`` (private), ``create_ref`` (kind, ref, start), ``delete_ref``
    (kind, ref) or ``delete`` (confirm: the repository's id typed again)."""
    form = await csrf.verified_form(request)
    f = {k: str(form.get(k) or "").strip() for k in ("action", "private", "kind", "ref", "start", "confirm")}
    hub, full = request.app.state.hub, f"{namespace}/{name}"

    def apply() -> str | None:
        with hub.db.session() as s:
            caller = page_caller(s, request)
            if caller is None:
                raise AuthError("log in to change repositories", 401)
            _, repo = visible_repo(s, request, namespace, name, caller)
        if repo is None:
            raise RepoNotFound(f"No repository {full}")
        action = f["action"]
        if action == "visibility":
            repos.update_repo_settings(hub, caller, full, private=f["private"] == "on")
            return "visibility"
        if action in ("create_ref", "delete_ref") and f["kind"] not in ("tag", "branch"):
            raise BadRequest(f"kind must be tag or branch, got {f['kind']!r}")
        if action == "create_ref":
            repos.create_ref(hub, caller, full, f["kind"], f["ref"], f["start"] or None)
            return "ref-created"
        if action == "delete_ref":
            repos.delete_ref(hub, caller, full, f["kind"], f["ref"])
            return "ref-deleted"
        if action == "delete":
            if f["confirm"] != full:
                raise BadRequest(f"type {full} to confirm the deletion")
            repos.delete_repo(hub, caller, full)
            return "deleted"
        raise BadRequest(f"unknown action {action!r}")

    try:
        done = await run_in_threadpool(apply)
    except HubError as e:
        if e.status == 401:
            return _login(f"/adapters/{full}/settings")
        if e.status == 404 and f["action"] != "delete_ref":
            return not_found(request, e.message)
        return _settings_page(request, namespace, name, status=e.status, error=e.message)
    if done == "deleted":
        return RedirectResponse(f"/adapters?author={quote(namespace)}&deleted={quote(full)}", status_code=303)
    return RedirectResponse(f"/adapters/{full}/settings?done={done}", status_code=303)


# --------------------------------------------------------------------------------------- organisation members
def _members_page(request: Request, org_name: str, status: int = 200, **ctx: Any):
    hub = request.app.state.hub
    with hub.db.session() as s:
        caller = page_caller(s, request)
        if caller is None:
            return _login(f"/orgs/{org_name}/members")
        org = s.scalar(select(Account).where(Account.name == org_name, Account.kind == "org"))
        # members (any role) and hub admins see the list; others get the 404 of a missing organisation
        if org is None or not (org.id in caller.orgs or caller.account.is_admin):
            return not_found(request, f"No organisation {org_name} that you are a member of.")
        members = s.execute(
            select(Account.name, Membership.role)
            .join(Membership, Membership.user_id == Account.id)
            .where(Membership.org_id == org.id)
            .order_by(Account.name)
        ).all()
        is_admin = _org_admin(caller, org.id)
    return render(
        request, "org_members.html", status=status, org=org_name, members=members, is_admin=is_admin,
        roles=ROLES, **ctx,
    )  # fmt: skip


def _org_admin(caller: Caller, org_id: int) -> bool:
    if caller.scope != "write":
        return False
    return caller.account.is_admin or caller.orgs.get(org_id) == "admin"


@router.get("/orgs/{org}/members", response_class=HTMLResponse)
def members_page(org: str, request: Request):
    return _members_page(request, org)


@router.post("/orgs/{org}/members", response_class=HTMLResponse)
async def members_form(org: str, request: Request):
    """``add`` (user, role: adds or changes the role) or ``remove`` (user); organisation admins only. The
    last admin cannot be removed or demoted, so an organisation always has one."""
    form = await csrf.verified_form(request)
    f = {k: str(form.get(k) or "").strip() for k in ("action", "user", "role")}
    hub = request.app.state.hub

    def apply() -> str:
        with hub.db.session() as s:
            caller = page_caller(s, request)
            if caller is None:
                raise AuthError("log in to manage members", 401)
            o = s.scalar(select(Account).where(Account.name == org, Account.kind == "org"))
            if o is None or not (o.id in caller.orgs or caller.account.is_admin):
                raise AuthError(f"no organisation {org} that you are a member of", 404)
            if not _org_admin(caller, o.id):
                raise AuthError(f"only admins of {org} (with a write token) manage its members", 403)
            user = s.scalar(select(Account).where(Account.name == f["user"], Account.kind == "user"))
            if user is None:
                raise AuthError(f"no user named {f['user']!r}", 400)
            m = s.get(Membership, (o.id, user.id))
            admins = s.scalars(
                select(Membership.user_id).where(Membership.org_id == o.id, Membership.role == "admin")
            ).all()
            losing_admin = (
                m is not None and m.role == "admin" and (f["action"] == "remove" or f["role"] != "admin")
            )
            if losing_admin and list(admins) == [user.id]:
                raise AuthError(
                    f"{user.name} is the last admin of {org}; make another member admin first", 409
                )
            if f["action"] == "add":
                if f["role"] not in ROLES:
                    raise AuthError(f"role must be one of {', '.join(ROLES)}", 400)
                add_member(s, o, user, f["role"])
                return f"{user.name} is now {f['role']} in {org}."
            if f["action"] == "remove":
                if m is None:
                    raise AuthError(f"{user.name} is no member of {org}", 400)
                s.delete(m)
                return f"{user.name} removed from {org}."
            raise AuthError(f"unknown action {f['action']!r}", 400)

    try:
        message = await run_in_threadpool(apply)
    except AuthError as e:
        if e.status == 401:
            return _login(f"/orgs/{org}/members")
        if e.status == 404:
            return not_found(request, e.message)
        return _members_page(request, org, status=e.status, error=e.message)
    return _members_page(request, org, message=message)
