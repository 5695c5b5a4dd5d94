"""Accounts, tokens and permissions.

Tokens look like ``ah_<random>``; only their sha256 is stored. A request authenticates with
``Authorization: Bearer <token>``. Reading a public repository needs nothing; reading a private one needs a
token of its owner or of a member of the owning organisation (anyone else gets the same 404 as for a
missing repository); writing needs a *write* token of the owner or of an org member with role write/admin.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import re
import secrets
import threading
import time

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from adapterhub.server.errors import AuthError
from adapterhub.server.models import Account, Membership, Repo, Token

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}$")


@dataclasses.dataclass
class Caller:
    """Who is calling: ``account`` is None for anonymous requests."""

    account: Account | None = None
    scope: str = ""  # "read" | "write" | ""
    token_name: str = ""
    orgs: dict[int, str] = dataclasses.field(default_factory=dict)  # org id -> role
    token_id: int | None = None

    @property
    def name(self) -> str | None:
        return self.account.name if self.account else None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def caller_from_header(s: Session, authorization: str | None) -> Caller:
    if not authorization:
        return Caller()
    kind, _, token = authorization.partition(" ")
    if kind.lower() != "bearer" or not token.strip():
        raise AuthError("malformed Authorization header (expected 'Bearer <token>')")
    row = s.scalar(
        select(Token).where(Token.token_hash == hash_token(token.strip()), Token.revoked.is_(False))
    )
    if row is None:
        raise AuthError("Invalid user token: unknown or revoked")
    orgs = {
        m.org_id: m.role for m in s.scalars(select(Membership).where(Membership.user_id == row.account_id))
    }
    return Caller(account=row.account, scope=row.scope, token_name=row.name, orgs=orgs, token_id=row.id)


def can_read(caller: Caller, repo: Repo) -> bool:
    if not repo.private:
        return True
    if caller.account is None:
        return False
    return caller.account.is_admin or repo.owner_id == caller.account.id or repo.owner_id in caller.orgs


def readable_repos(caller: Caller):
    """A WHERE clause for the repositories ``caller`` may read (None: all of them, for administrators)."""
    if caller.account is None:
        return Repo.private.is_(False)
    if caller.account.is_admin:
        return None
    return or_(Repo.private.is_(False), Repo.owner_id.in_([caller.account.id, *caller.orgs]))


def can_write_namespace(caller: Caller, owner: Account) -> bool:
    if caller.account is None or caller.scope != "write":
        return False
    if caller.account.is_admin or owner.id == caller.account.id:
        return True
    return caller.orgs.get(owner.id) in ("write", "admin")


def require_write(s: Session, caller: Caller, repo: Repo) -> None:
    """Raise AuthError unless ``caller`` may write to ``repo`` (checked after can_read: outsiders get 404)."""
    if caller.account is None:
        raise AuthError("authentication required: pass a write token (Authorization: Bearer ...)", 401)
    if caller.scope != "write":
        raise AuthError("this token is read-only; a write token is needed", 403)
    owner = s.get(Account, repo.owner_id) if repo.owner_id else None
    if owner is None and not caller.account.is_admin:
        raise AuthError(f"only an admin can write to {repo.repo_id}", 403)
    if owner is not None and not can_write_namespace(caller, owner):
        raise AuthError(f"{caller.account.name} may not write to {repo.repo_id}", 403)


# --- administration (CLI and tests) -------------------------------------------------------------------


def create_account(
    s: Session, name: str, kind: str = "user", is_admin: bool = False, email: str | None = None
) -> Account:
    if not NAME_RE.match(name) or "--" in name or ".." in name:
        raise ValueError(f"invalid account name {name!r}")
    if s.scalar(select(Account).where(Account.name == name)) is not None:
        raise ValueError(f"account {name!r} already exists")
    acc = Account(name=name, kind=kind, is_admin=is_admin, email=email)
    s.add(acc)
    s.flush()
    return acc


def get_or_create_user(s: Session, name: str, is_admin: bool = False) -> Account:
    acc = s.scalar(select(Account).where(Account.name == name))
    return acc if acc is not None else create_account(s, name, "user", is_admin)


def add_member(s: Session, org: Account, user: Account, role: str = "write") -> None:
    if org.kind != "org" or user.kind != "user":
        raise ValueError("members are users added to organisations")
    if role not in ("read", "write", "admin"):
        raise ValueError(f"unknown role {role!r}")
    m = s.get(Membership, (org.id, user.id))
    if m is None:
        s.add(Membership(org_id=org.id, user_id=user.id, role=role))
    else:
        m.role = role
    s.flush()


def create_token(s: Session, account: Account, scope: str = "write", name: str = "") -> str:
    """Create a token and return it in clear (the only time it is visible)."""
    if scope not in ("read", "write"):
        raise ValueError(f"scope must be read or write, not {scope!r}")
    if account.kind != "user":
        raise ValueError("tokens belong to users, not organisations")
    token = "ah_" + secrets.token_urlsafe(30)
    s.add(
        Token(account_id=account.id, name=name or f"{scope}-token", token_hash=hash_token(token), scope=scope)
    )
    s.flush()
    return token


# --- token management (API, CLI and web UI) -------------------------------------------------------------


def token_info(t: Token, current_id: int | None = None) -> dict:
    """A token as the API, the CLI and the UI list it (never the token itself: only its hash is stored)."""
    return {
        "id": t.id,
        "name": t.name,
        "scope": t.scope,
        "createdAt": t.created_at.isoformat() + "Z",
        "revoked": bool(t.revoked),
        "current": t.id == current_id,
    }


def list_tokens(s: Session, account: Account) -> list[Token]:
    return list(s.scalars(select(Token).where(Token.account_id == account.id).order_by(Token.id)))


def require_token_manager(caller: Caller) -> Account:
    """Creating or revoking tokens needs a write token (a read token cannot mint a write token)."""
    if caller.account is None:
        raise AuthError("authentication required: pass a token (Authorization: Bearer ...)", 401)
    if caller.scope != "write":
        raise AuthError("this token is read-only; managing tokens needs a write token", 403)
    return caller.account


def revoke_token(s: Session, caller: Caller, token_id: int) -> Token:
    """Revoke one of the caller's tokens (an admin: anyone's). Any token may revoke itself."""
    if caller.account is None:
        raise AuthError("authentication required: pass a token (Authorization: Bearer ...)", 401)
    t = s.get(Token, token_id) if 0 < token_id < 2**63 else None  # ids are 64-bit: larger ones name nothing
    mine = t is not None and t.account_id == caller.account.id
    if t is None or not (mine or caller.account.is_admin):
        raise AuthError(f"no token {token_id} of {caller.account.name}", 404)
    if t.id != caller.token_id:
        require_token_manager(caller)
    t.revoked = True
    s.flush()
    return t


class LoginThrottle:
    """Failed web logins per client address: after ``limit`` failures within ``window`` seconds, further
    attempts from that address are refused until the oldest failure leaves the window. Kept in memory per
    server process (tokens are random 240-bit values: this stops guessing noise, not a real attack)."""

    def __init__(self, limit: int = 10, window: float = 900.0, max_clients: int = 100_000):
        self.limit, self.window, self.max_clients = limit, window, max_clients
        self._failures: dict[str, collections.deque] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> int:
        """Seconds until ``client`` may try again (0: now)."""
        with self._lock:
            q = self._prune(client)
            if q is None or len(q) < self.limit:
                return 0
            return max(1, int(q[0] + self.window - time.monotonic()) + 1)

    def failed(self, client: str) -> None:
        with self._lock:
            if len(self._failures) >= self.max_clients:  # never grow unbounded: forget the oldest half
                for key in list(self._failures)[: self.max_clients // 2]:
                    del self._failures[key]
            self._failures.setdefault(client, collections.deque()).append(time.monotonic())

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)

    def _prune(self, client: str):
        q = self._failures.get(client)
        if q is None:
            return None
        cut = time.monotonic() - self.window
        while q and q[0] < cut:
            q.popleft()
        if not q:
            del self._failures[client]
            return None
        return q
