"""Server-rendered web UI (Jinja2, no JavaScript needed): browse by task / language / base model, faceted
search, adapter pages (card, config, files with sizes and sha256, versions, validation, metrics, code
snippets) and an upload form for a folder, single files or a zip archive.

The upload form goes through the same checks and commit pipeline as the HF protocol (``uploads.Staging``,
``uploads.extract_zip``, ``commits.commit_to_new_repo``). Browsers authenticate with a hub token pasted into
the login form (kept in an HttpOnly cookie, ``sessions.py``) or into the upload form itself. Every form that changes
something goes through the CSRF check of ``csrf.py``; every page gets the headers of ``security.py``.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from adapterhub.server import csrf, sessions
from adapterhub.server.humanize import human_count, human_params, human_size
from adapterhub.server.index_models import IndexEntry, TaxonomyLanguage, TaxonomyTask
from adapterhub.server.models import Commit, Ref, Repo, Validation
from adapterhub.server.errors import HubError
from adapterhub.server.search import get_session, viewer_for
from adapterhub.server.search_models import score_metric
from adapterhub.server.search_query import FACETS, SORTS, SearchQuery
from adapterhub.server.search_service import search
from adapterhub.server.security import safe_next
from adapterhub.server.storage import read_head

HERE = Path(__file__).parent
FACET_LABELS = {
    "task": "Task",
    "subtask": "Dataset",
    "language": "Language",
    "base_model": "Base model",
    "method": "Method",
    "library": "Format",
    "head": "Head",
    "model_type": "Model type",
    "license": "Licence",
    "author": "Author",
    "source": "Source",
}

router = APIRouter(include_in_schema=False)


# ------------------------------------------------------------------------------------------------ helpers
def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(HERE / "templates")),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["size"] = human_size
    env.filters["count"] = human_count
    env.filters["params"] = human_params
    env.filters["score_metric"] = score_metric
    env.filters["date"] = lambda d: d.strftime("%Y-%m-%d") if isinstance(d, dt.datetime) else (d or "")
    env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=2, sort_keys=True, ensure_ascii=False)
    return env


ENV = _env()


def render(request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    """A page; its forms carry ``{{ csrf_field }}`` (the browser gets its CSRF cookie here if it has none)."""
    ctx.setdefault("user", _user_name(request))
    ctx.setdefault("q", "")
    token, new_seed = csrf.form_token(request)
    ctx.setdefault("csrf_field", csrf.hidden_field(token))
    html = ENV.get_template(template).render(request=request, facet_labels=FACET_LABELS, **ctx)
    resp = HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})
    if new_seed is not None:
        csrf.attach_cookie(request, resp, new_seed)
    return resp


def _user_name(request: Request) -> str | None:
    token = sessions.cookie_token(request.cookies)
    if not token:
        return None
    from adapterhub.server.auth import AuthError, caller_from_header

    try:
        with request.app.state.hub.db.session() as s:
            caller = caller_from_header(s, "Bearer " + token)
            return caller.name
    except AuthError:
        return None


def query_url(path: str, params: dict[str, Any]) -> str:
    clean = {k: v for k, v in params.items() if v not in (None, "") and not (k == "page" and v == 1)}
    return path + ("?" + urlencode(clean) if clean else "")


def public_url(request: Request) -> str:
    hub = request.app.state.hub
    return (getattr(hub.settings, "public_url", "") or str(request.base_url)).rstrip("/")


# ---------------------------------------------------------------------------------------------------- pages
@router.get("/static/{name}")
def static(name: str) -> Response:
    path = HERE / "static" / name
    if "/" in name or name.startswith(".") or not path.is_file():
        return Response("not found", status_code=404, media_type="text/plain")
    media = {".css": "text/css", ".svg": "image/svg+xml", ".js": "text/javascript"}.get(
        path.suffix, "text/plain"
    )
    return Response(path.read_bytes(), media_type=media, headers={"Cache-Control": "public, max-age=3600"})


@router.get("/", response_class=HTMLResponse)
def home(request: Request, s: Session = Depends(get_session)):
    viewer = viewer_for(request, s)
    res = search(s, SearchQuery(per_page=8, sort="recent", filters={"source": "hub"}, facets=False), viewer)
    overview = search(s, SearchQuery(per_page=1), viewer)
    kinds = {
        n: (d, k)
        for n, d, k in s.execute(select(TaxonomyTask.name, TaxonomyTask.displayname, TaxonomyTask.kind))
    }
    # language adapters name their language as task: they belong in the languages box, not among tasks
    tasks = [(t, c) for t, c in top_tasks(s, viewer) if kinds.get(t, ("", "text_task"))[1] != "text_lang"][
        :12
    ]
    names = {n: d for n, (d, _) in kinds.items()}
    langs = dict(s.execute(select(TaxonomyLanguage.code, TaxonomyLanguage.name)).all())
    return render(
        request,
        "home.html",
        recent=res.items,
        total=overview.total,
        facets=overview.facets,
        tasks=tasks,
        task_names=names,
        lang_names=langs,
    )


def top_tasks(s: Session, viewer) -> list[tuple[str, int]]:
    """Tasks by number of visible adapters, language adapters (adapter_type ``text_lang``) left out."""
    from adapterhub.server.search_query import visible

    vis = visible(viewer)
    rows = s.execute(
        select(IndexEntry.task, func.count())
        .where(
            IndexEntry.is_adapter.is_(True),
            IndexEntry.task.is_not(None),
            (IndexEntry.adapter_type.is_(None)) | (IndexEntry.adapter_type != "text_lang"),
            *([vis] if vis is not None else []),
        )
        .group_by(IndexEntry.task)
        .order_by(func.count().desc(), IndexEntry.task)
        .limit(40)
    ).all()
    return [(t, c) for t, c in rows]


@router.get("/adapters", response_class=HTMLResponse)
def adapters_page(request: Request, s: Session = Depends(get_session)):
    params = request.query_params
    filters = {k: params[k] for k in FACETS if params.get(k)}
    sort = params.get("sort") or "recent"
    if sort not in SORTS:
        sort = "recent"
    try:
        page = max(1, int(params.get("page") or 1))
    except ValueError:
        page = 1
    q = params.get("q", "")
    per_page = 20
    res = search(
        s, SearchQuery(q=q, filters=filters, sort=sort, page=page, per_page=per_page), viewer_for(request, s)
    )
    base = {"q": q, "sort": sort if sort != "recent" else None, **filters}

    def toggle(name: str, value: str) -> str:
        p = dict(base)
        p[name] = None if filters.get(name) == value else value
        return query_url("/adapters", p)

    pages = max(1, -(-res.total // per_page))
    return render(
        request,
        "adapters.html",
        items=res.items,
        total=res.total,
        facets=res.facets,
        filters=filters,
        q=q,
        sort=sort,
        sorts=SORTS,
        page=page,
        pages=pages,
        toggle=toggle,
        remove=lambda name: query_url("/adapters", {**base, name: None}),
        page_url=lambda n: query_url("/adapters", {**base, "page": n}),
    )


@router.get("/tasks", response_class=HTMLResponse)
def tasks_page(request: Request, s: Session = Depends(get_session)):
    from adapterhub.server.search_service import taxonomy

    tax = taxonomy(s, viewer_for(request, s))
    groups = {
        "text_task": [t for t in tax.tasks if t.kind != "text_lang"],
        "text_lang": [t for t in tax.tasks if t.kind == "text_lang"],
    }
    return render(request, "tasks.html", groups=groups)


@router.get("/languages", response_class=HTMLResponse)
def languages_page(request: Request, s: Session = Depends(get_session)):
    from adapterhub.server.search_service import taxonomy

    langs = sorted(taxonomy(s, viewer_for(request, s)).languages, key=lambda x: (-x.count, x.name))
    return render(request, "languages.html", languages=langs)


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, s: Session = Depends(get_session)):
    from adapterhub.server.search_query import visible

    vis = visible(viewer_for(request, s))
    conds = [
        IndexEntry.is_adapter.is_(True),
        IndexEntry.base_model.is_not(None),
        *([vis] if vis is not None else []),
    ]
    rows = s.execute(
        select(IndexEntry.base_model, IndexEntry.model_type, func.count())
        .where(*conds)
        .group_by(IndexEntry.base_model, IndexEntry.model_type)
        .order_by(func.count().desc(), IndexEntry.base_model)
    ).all()
    return render(request, "models.html", models=rows)


def visible_repo(
    s: Session, request: Request, namespace: str, name: str, caller=None
) -> tuple[IndexEntry | None, Repo | None]:
    """The index entry and repository named, as far as the caller may see them: ``caller``, else the
    request's (Authorization header, or the login cookie on GET); a private repository of someone else is
    (None, None), like a missing one. Form posts pass the caller of their (CSRF-checked) login cookie."""
    from adapterhub.server.auth import AuthError, caller_from_header, can_read

    e = s.scalar(select(IndexEntry).where(IndexEntry.full_name == f"{namespace}/{name}"))
    repo = (
        s.get(Repo, e.repo_pk)
        if e is not None and e.repo_pk
        else s.scalar(select(Repo).where(Repo.namespace == namespace, Repo.name == name))
    )
    if caller is None:
        try:
            caller = caller_from_header(s, sessions.read_authorization(request))
        except AuthError:
            caller = None
    if repo is not None and (caller is None or not can_read(caller, repo)):
        return None, None  # private: the same 404 as a missing repository
    return e, repo


def not_found(request: Request, message: str) -> HTMLResponse:
    return render(request, "error.html", status=404, title="Not found", message=message)


@router.get("/adapters/{namespace}/{name}", response_class=HTMLResponse)
def adapter_page(namespace: str, name: str, request: Request, s: Session = Depends(get_session)):
    full = f"{namespace}/{name}"
    e, repo = visible_repo(s, request, namespace, name)
    if e is None and repo is None:
        return not_found(
            request, f"No adapter {full} (or it is private and you are not logged in as its owner)."
        )
    ctx: dict[str, Any] = {"e": e, "repo": repo, "full": full, "hub_url": public_url(request)}
    data = (e.data if e is not None else None) or {}
    ctx["data"] = data
    if repo is not None:
        refs = list(s.scalars(select(Ref).where(Ref.repo_id == repo.id).order_by(Ref.kind, Ref.name)))
        rev = request.query_params.get("rev") or (e.commit_oid if e is not None and e.commit_oid else None)
        main_ref = next((r for r in refs if r.kind == "branch" and r.name == "main"), None)
        oid = rev or (main_ref.commit_oid if main_ref else None)
        commit = s.get(Commit, oid) if oid else None
        if commit is None or commit.repo_id != repo.id:
            ref = next((r for r in refs if r.name == rev), None)
            commit = s.get(Commit, ref.commit_oid) if ref else None
        history = list(
            s.scalars(
                select(Commit).where(Commit.repo_id == repo.id).order_by(Commit.created_at.desc()).limit(30)
            )
        )
        tags_by_commit: dict[str, list[str]] = {}
        for r in refs:
            tags_by_commit.setdefault(r.commit_oid, []).append(f"{r.kind}:{r.name}")
        files = []
        if commit is not None:
            files = [{"path": f.path, "size": f.blob.size, "sha256": f.blob_sha256} for f in commit.files]
        validation = s.get(Validation, commit.oid) if commit is not None else None
        card = None
        readme = next((f for f in files if f["path"] == "README.md"), None)
        if readme is not None and readme["size"] < 1 << 20:
            from adapterhub.server.cards import render_card

            raw = read_head(request.app.state.hub.store, readme["sha256"], 1 << 20, f"repo {full}: README.md")
            card = render_card(raw.decode("utf-8", errors="replace")) if raw is not None else None
        ctx.update(
            refs=refs,
            commit=commit,
            history=history,
            files=files,
            validation=validation,
            card=card,
            tags_by_commit=tags_by_commit,
            is_head=commit is not None and e is not None and commit.oid == e.commit_oid,
        )
    ctx["snippets"] = snippets(e, full, ctx.get("commit"), public_url(request))
    ctx["params"] = param_counts(e)
    ctx["anatomy"] = anatomy_svg(s, request.app.state.hub.store, e)
    return render(request, "adapter.html", **ctx)


class ParamCounts(NamedTuple):
    adapter: int | None  # the adapter's own parameters (every tensor when no split is known)
    head: int | None  # prediction heads saved with it


def param_counts(e: IndexEntry | None) -> ParamCounts:
    """The one parameter count every page shows: the adapter's tensors, with the heads saved alongside
    counted apart (the index stores the total and the heads' part)."""
    if e is None or e.num_params is None:
        return ParamCounts(None, None)
    head = (e.data or {}).get("head_params")
    if not isinstance(head, int):
        return ParamCounts(e.num_params, None)
    return ParamCounts(e.num_params - head, head)


def anatomy_svg(s: Session, store, e: IndexEntry | None) -> Markup | None:
    """The adapter's anatomy drawing, with the base model's layers and size when the hub holds it."""
    from adapterhub.server.anatomy import Sizes, base_dims, describe, render_svg
    from adapterhub.server.indexing import hub_base_config

    data = (e.data if e is not None else None) or {}
    config = data.get("config")
    if e is None or not e.is_adapter or not isinstance(config, dict):
        return None
    base_cfg = (hub_base_config(s, store, e.base_model) if e.base_model else None) or {}
    hidden, layers = base_dims(base_cfg)
    peft_dims = base_dims({"hidden_size": config.get("token_dim"), "n_layers": config.get("num_layers")})
    base = (
        s.scalar(
            select(IndexEntry).where(IndexEntry.full_name == e.base_model, IndexEntry.private.is_(False))
        )
        if base_cfg
        else None
    )
    sizes = Sizes(
        adapter_params=param_counts(e).adapter,
        head_params=param_counts(e).head,
        adapter_bytes=data.get("weights_bytes"),
        base_params=base.num_params if base is not None else None,
        base_bytes=((base.data or {}).get("weights_bytes") or None) if base is not None else None,
    )
    anat = describe(
        config,
        model_type=e.model_type or base_cfg.get("model_type"),
        hidden_size=e.hidden_size or hidden or peft_dims[0],
        num_layers=layers or peft_dims[1],
    )
    return render_svg(anat, sizes)


def snippets(
    e: IndexEntry | None, full: str, commit: Commit | None, hub_url: str
) -> list[tuple[str, str, str]]:
    """(title, note, code) of copy-paste snippets for adapterhub, adapters and peft."""
    base = (e.base_model if e is not None else None) or "<base model>"
    rev = commit.oid if commit is not None else None
    library = e.library if e is not None else None
    out = []
    if e is not None and e.source == "legacy":
        ident = data_ident = (e.data or {}).get("identifier") or full
        out.append(
            (
                "adapterhub",
                "Resolves the legacy identifier; the weights are not hosted here.",
                f'curl "{hub_url}/api/adapters/resolve?identifier={data_ident}&model_name={base}'
                f'&config={e.config_hash}"',
            )
        )
        out.append(
            (
                "adapters",
                "The original AdapterHub identifier (weights hosted by the authors).",
                f'model.load_adapter("{ident}", config="{(e.data or {}).get("architecture") or e.method}")',
            )
        )
        return out
    pin = f"@{rev}" if rev else ""
    out.append(
        (
            "adapterhub",
            "Loads the pinned commit; works for AdapterHub and PEFT formats.",
            f"# export ADAPTERHUB_ENDPOINT={hub_url}\n"
            "import adapterhub\nfrom transformers import AutoModel\n\n"
            f'model = AutoModel.from_pretrained("{base}")\nadapterhub.init(model)\n'
            f'name = model.load_adapter("{full}{pin}", set_active=True)',
        )
    )
    if library != "peft":
        out.append(
            (
                "adapters",
                "The AdapterHub `adapters` library, through the Hugging Face protocol.",
                f"# export HF_ENDPOINT={hub_url}\n"
                "import adapters\nfrom transformers import AutoModel\n\n"
                f'model = AutoModel.from_pretrained("{base}")\nadapters.init(model)\n'
                f'name = model.load_adapter("{full}"' + (f', version="{rev}"' if rev else "") + ")\n"
                "model.set_active_adapters(name)",
            )
        )
    if library != "adapters":
        out.append(
            (
                "peft",
                "PEFT, through the Hugging Face protocol.",
                f"# export HF_ENDPOINT={hub_url}\n"
                "from peft import PeftModel\nfrom transformers import AutoModel\n\n"
                f'base = AutoModel.from_pretrained("{base}")\n'
                f'model = PeftModel.from_pretrained(base, "{full}"'
                + (f', revision="{rev}"' if rev else "")
                + ")",
            )
        )
    return out


# ------------------------------------------------------------------------------------------- login, upload
@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request):
    return render(request, "login.html", next=safe_next(request.query_params.get("next"), "/upload"))


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request):
    from adapterhub.server.auth import AuthError, caller_from_header

    hub = request.app.state.hub
    client = sessions.client_address(request)
    wait = hub.login_throttle.retry_after(client)
    if wait:
        resp = render(
            request, "login.html", status=429, error=f"Too many failed logins: try again in {wait} s."
        )
        resp.headers["Retry-After"] = str(wait)
        return resp
    form = await csrf.verified_form(request)
    token = str(form.get("token") or "").strip()
    target = safe_next(str(form.get("next") or ""), "/upload")
    try:
        with hub.db.session() as s:
            caller = caller_from_header(s, "Bearer " + token) if token else None
    except AuthError:
        caller = None
    if caller is None or caller.account is None:
        hub.login_throttle.failed(client)
        return render(request, "login.html", status=401, error="Unknown or revoked token.", next=target)
    hub.login_throttle.succeeded(client)
    resp = RedirectResponse(target, status_code=303)
    sessions.log_in(request, resp, token)
    return resp


@router.post("/logout")
async def logout(request: Request):
    await csrf.verified_form(request)
    resp = RedirectResponse("/", status_code=303)
    sessions.log_out(request, resp)
    return resp


def render_upload(request: Request, status: int = 200, form: dict | None = None, **ctx: Any) -> HTMLResponse:
    from adapterhub.server.card_form import choice_groups, form_options

    with request.app.state.hub.db.session() as s:
        groups = choice_groups(form_options(s))
    return render(request, "upload.html", status=status, form=form or {}, groups=groups, **ctx)


@router.get("/upload", response_class=HTMLResponse)
def upload_form(request: Request):
    return render_upload(request)


def _strip_common_root(paths: list[str]) -> str:
    """A folder picked in the browser sends `folder/...` names: the shared first component is dropped."""
    firsts = {p.split("/", 1)[0] for p in paths}
    if len(firsts) == 1 and all("/" in p for p in paths):
        return firsts.pop() + "/"
    return ""


@router.post("/upload", response_class=HTMLResponse)
async def upload(request: Request):
    from starlette.concurrency import run_in_threadpool

    hub = request.app.state.hub
    wait = hub.login_throttle.retry_after(sessions.client_address(request))  # a pasted token is a login
    if wait:
        resp = render_upload(request, status=429, error=f"Too many failed logins: try again in {wait} s.")
        resp.headers["Retry-After"] = str(wait)
        return resp
    try:
        form = await csrf.verified_form(request, max_files=hub.limits.max_files + 10)
    except csrf.CsrfError:
        raise
    except HubError as e:  # the body is over a limit (gate.py)
        return render_upload(request, status=e.status, error=e.message)
    except Exception as e:  # noqa: BLE001 - malformed multipart bodies
        return render_upload(request, status=400, error=f"Could not read the form: {e}")
    fields = {k: str(form.get(k) or "").strip() for k in UPLOAD_FIELDS}
    uploads = [
        f for f in form.getlist("files") + form.getlist("folder") if isinstance(f, UploadFile) and f.filename
    ]
    archive = form.get("zip")
    archive = archive if isinstance(archive, UploadFile) and archive.filename else None
    try:
        result = await run_in_threadpool(_do_upload, request, hub, fields, uploads, archive)
    except _FormError as e:
        fields.pop("token", None)
        return render_upload(request, status=e.status, form=fields, error=e.message)
    finally:
        await form.close()
    repo_id, oid, status = result
    return RedirectResponse(f"/adapters/{repo_id}?uploaded={oid}", status_code=303)


#: text fields of the upload form: the repository and commit, then the card metadata (card_form.py)
UPLOAD_FIELDS = (
    "repo_id", "token", "message", "private",
    "base_model", "base_model_other", "task", "task_other", "subtask", "subtask_other",
    "language", "language_other", "license", "license_other", "metrics", "body",
)  # fmt: skip


class _FormError(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


def _do_upload(
    request: Request, hub, fields: dict[str, str], uploads: list[UploadFile], archive: UploadFile | None
) -> tuple[str, str, str]:
    from adapterhub.server import commits
    from adapterhub.server.auth import AuthError, caller_from_header
    from adapterhub.server.uploads import Staging, extract_zip

    token = fields["token"] or sessions.cookie_token(request.cookies) or ""
    if not token:
        raise _FormError("Log in or paste a write token to upload.", 401)
    try:
        with hub.db.session() as s:
            caller = caller_from_header(s, "Bearer " + token)
    except AuthError as e:
        if fields["token"]:
            hub.login_throttle.failed(sessions.client_address(request))
        raise _FormError(e.message, e.status) from e
    repo_id = fields["repo_id"]
    if caller.account is not None and repo_id and "/" not in repo_id:
        repo_id = f"{caller.account.name}/{repo_id}"
    if not repo_id:
        raise _FormError("Give the repository a name (namespace/name).")
    if not uploads and archive is None:
        raise _FormError("Choose a folder, some files or a zip archive to upload.")
    from adapterhub.server.card_form import CardFieldError, compose_card, form_options, read_fields

    try:
        with hub.db.session() as s:
            card = read_fields(fields, form_options(s))
    except CardFieldError as e:
        raise _FormError(str(e)) from e
    try:
        with Staging(hub.tmp_dir, hub.limits) as staging:
            if archive is not None:
                archive.file.seek(0)
                extract_zip(archive.file, staging)
            names = [f.filename.replace("\\", "/") for f in uploads]
            root = _strip_common_root(names) if names else ""
            for f, name in zip(uploads, names):
                f.file.seek(0)
                staging.add_stream(name[len(root) :], f.file)
            if not staging.files:
                raise _FormError("The upload holds no files.")
            if not card.empty():  # the form's metadata goes into the card (an uploaded one is updated)
                readme = staging.files.get("README.md")
                if readme is not None and readme.size > 1 << 20:
                    raise _FormError(
                        "README.md is over 1 MiB: leave the card fields empty or upload a smaller card"
                    )
                existing = readme.tmp.read_text("utf-8", errors="replace") if readme is not None else None
                staging.add_bytes("README.md", compose_card(existing, card, repo_id).encode())
            ops = [commits.Op("add", p, staged=sf) for p, sf in staging.files.items()]
            message = fields["message"] or f"Upload {len(ops)} file(s) from the web form"
            private = fields["private"] in ("on", "1", "true")
            # one step: a refused first commit leaves no repository behind
            repo_id, oid, status = commits.commit_to_new_repo(
                hub, caller, repo_id, ops, message, private=private
            )
    except HubError as e:  # refused: a bad file or archive, a failed check, no permission
        raise _FormError(e.message, e.status) from e
    return repo_id, oid, status
