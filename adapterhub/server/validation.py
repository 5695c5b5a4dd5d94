"""Validation of commits.

Two stages:

* **Checks before storing** (synchronous, cheap; :func:`checks_before_storing`): the file checks of
  ``checks.py`` on every adapter folder of the new tree, and the base model, which must be a hub repository
  holding a ``config.json``.
* **The load check** (a worker thread; never in the event loop; :func:`load_checks`): the adapter is loaded
  into a randomly initialised model built from the base model's config by
  ``adapterhub.library.validate.validate_adapter``; it must load with zero missing and unexpected keys and
  change at least one module. Uploads wait up to ``Settings.validation_wait`` seconds for it: a failure
  within that time refuses the upload; a slower check finishes in the background and flags the commit.

Results are stored per commit (:func:`record_validation`, through ``Hub.record_validation`` so that the hooks
run); :func:`revalidate` checks a stored commit again (at start-up, or in an ``adapterhub worker``).
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import json
import logging
import math
import posixpath
import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from adapterhub.server import checks
from adapterhub.server.auth import Caller, can_read
from adapterhub.server.errors import Conflict, HubError
from adapterhub.server.models import Account, Commit, Validation, utcnow
from adapterhub.server.repos import commit_tree, find_repo, get_validation, resolve_revision, valid_repo_id
from adapterhub.server.storage import link_or_copy
from adapterhub.server.uploads import StagedFile

if TYPE_CHECKING:
    from adapterhub.server.hub import Hub

log = logging.getLogger("adapterhub.server.validation")


@dataclasses.dataclass
class TreeEntry:
    """A file of a commit's tree while it is built or checked: a stored blob, or a ``staged`` upload."""

    sha256: str
    size: int
    git_oid: str
    staged: StagedFile | None = None


def validated_part(tree: dict[str, TreeEntry]) -> dict[str, str]:
    """What the checks before storing and the load check depend on: the card, every config.json and
    adapter folder (a commit that changes none of these can be rebased onto without checking again)."""
    folders = {posixpath.dirname(p) for p in tree if posixpath.basename(p) == checks.ADAPTER_CONFIG}
    out = {}
    for p, e in tree.items():
        d = posixpath.dirname(p)
        if (
            p == "README.md"
            or posixpath.basename(p) == "config.json"
            or any(f == "" or d == f or d.startswith(f + "/") for f in folders)
        ):
            out[p] = e.sha256
    return out


def _lost(path: str) -> Conflict:
    return Conflict(
        f"{path}: its content is missing from the hub's blob store; "
        "upload the file again (or delete it) in this commit"
    )


def read_entry(hub: Hub, path: str, e: TreeEntry) -> bytes:
    """The content of file ``path`` of a new tree (staged, or from the store: a lost blob refuses the commit)."""
    if e.staged is not None:
        return e.staged.tmp.read_bytes()
    try:
        with hub.store.open(e.sha256) as f:
            return f.read()
    except FileNotFoundError:
        raise _lost(path) from None


def copy_entry(hub: Hub, path: str, e: TreeEntry, dest: Path) -> None:
    if e.staged is not None:
        link_or_copy(e.staged.tmp, dest)
        return
    try:
        hub.store.copy_to(e.sha256, dest)
    except FileNotFoundError:
        raise _lost(path) from None


def checks_before_storing(
    s: Session, hub: Hub, caller: Caller, tree: dict[str, TreeEntry]
) -> tuple[list[dict], list[str]]:
    """Schema, card, safetensors headers and base model of every adapter folder in the new tree."""
    errors: list[str] = []
    for p, e in tree.items():
        if e.staged is not None and p.lower().endswith(".safetensors"):
            errors += checks.check_safetensors(e.staged.tmp, p)[1]
        if (
            e.staged is not None
            and p.endswith(".json")
            and posixpath.basename(p) in ("config.json", checks.ADAPTER_CONFIG)
        ):
            try:
                json.loads(read_entry(hub, p, e))
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                errors.append(f"{p}: not valid JSON ({err})")
    card_meta: dict = {}
    if "README.md" in tree:
        card_meta, card_errors = checks.parse_card(read_entry(hub, "README.md", tree["README.md"]))
        errors += card_errors
    if errors:
        return [], errors
    adapters = []
    for p in sorted(tree):
        if posixpath.basename(p) != checks.ADAPTER_CONFIG:
            continue
        folder = posixpath.dirname(p)
        info, errs = checks.check_adapter_config(read_entry(hub, p, tree[p]), card_meta, folder)
        errors += errs
        if info is None:
            continue
        prefix = folder + "/" if folder else ""
        files = {q[len(prefix) :]: tree[q] for q in tree if q.startswith(prefix)}
        if folder == "":  # nested adapter folders are validated on their own
            nested = {
                posixpath.dirname(q)
                for q in tree
                if posixpath.basename(q) == checks.ADAPTER_CONFIG and "/" in q
            }
            files = {q: e for q, e in files.items() if not any(q.startswith(n + "/") for n in nested)}
        weights = [q for q in files if q.endswith(".safetensors")]
        if not weights:
            errors.append(f"{p}: no .safetensors weights next to the adapter config")
            continue
        base = base_model_config(s, hub, caller, info)
        if isinstance(base, str):
            errors.append(base)
            continue
        base_repo, base_commit, base_cfg = base
        adapters.append({"folder": folder, "dialect": info.dialect, "base_model": info.base_model,
                         "base_repo": base_repo, "base_commit": base_commit, "base_config": base_cfg,
                         "files": files})  # fmt: skip
    return adapters, errors


def base_model_config(
    s: Session, hub: Hub, caller: Caller, info: checks.AdapterInfo
) -> tuple[str, str, dict] | str:
    where = posixpath.join(info.folder, checks.ADAPTER_CONFIG)
    unknown = (
        f"{where}: unknown base model {info.base_model!r}: no repository of that name with a config.json on this hub "
        "(push the base model's config.json to a repository of that name first)"
    )
    if not valid_repo_id(info.base_model):
        return unknown
    repo = find_repo(s, info.base_model)
    if repo is None or not can_read(caller, repo):
        return unknown
    try:
        c = resolve_revision(s, repo, info.base_revision or "main")
    except HubError:
        return f"{where}: base model {info.base_model!r} has no revision {info.base_revision!r}"
    f = commit_tree(c).get("config.json")
    if f is None:
        return unknown
    with hub.store.open(f.blob.sha256) as fh:
        try:
            cfg = json.loads(fh.read())
        except (UnicodeDecodeError, json.JSONDecodeError):
            return f"{where}: the base model's config.json ({info.base_model}) is not valid JSON"
    if not isinstance(cfg, dict) or "model_type" not in cfg:
        return f"{where}: the base model's config.json ({info.base_model}) has no model_type"
    return repo.repo_id, c.oid, cfg


def load_checks(
    hub: Hub,
    tree: dict[str, TreeEntry],
    adapters: list[dict],
    parent_report: dict,
    wait: float | None = None,
    run: bool = True,
) -> tuple[str, dict]:
    """Run (or reuse) the load check of every adapter folder; wait up to ``validation_wait`` seconds (``wait``:
    that many, ``math.inf``: until done). ``run=False`` (uploads to a hub whose checks run in ``adapterhub worker``
    processes) reuses earlier results only and leaves the rest pending. Returns (status, report); status is
    passed, failed, pending (still running, or queued) or skipped (no adapter)."""
    if not adapters:
        kind = "base_model" if "config.json" in tree else "files"
        return "skipped", {"kind": kind, "adapters": []}
    previous = {a.get("fingerprint"): a for a in parent_report.get("adapters", []) if a.get("ok") is not None}
    results: list[dict] = []
    futures: dict[cf.Future, dict] = {}
    for a in adapters:
        fp = checks.fingerprint({p: e.sha256 for p, e in a["files"].items()}, a["base_commit"])
        entry = {"folder": a["folder"], "dialect": a["dialect"], "base_model": a["base_model"],
                 "base_repo": a["base_repo"], "base_commit": a["base_commit"], "fingerprint": fp}  # fmt: skip
        if fp in previous:
            entry.update({k: v for k, v in previous[fp].items() if k not in entry})
            results.append(entry)
            continue
        entry["ok"] = None
        results.append(entry)
        if not run:
            continue
        job = hub.validator.new_job_dir()
        for p, e in a["files"].items():
            copy_entry(hub, p, e, job / p)
        futures[hub.validator.submit(job, a["base_config"], a["dialect"])] = entry
    if futures:
        timeout = hub.settings.validation_wait if wait is None else wait
        cf.wait(list(futures), timeout=None if timeout == math.inf else timeout)
    pending = []
    for fut, entry in futures.items():
        if fut.done():
            entry.update(fut.result())
        else:
            pending.append((fut, entry))
    report = {"kind": "adapter", "adapters": results}
    if pending:
        report["_futures"] = pending  # taken out by finish_in_background
        return "pending", report
    return status_of(results), report


def status_of(results: list[dict]) -> str:
    """failed > pending > unverified (this server cannot check that kind of adapter) > passed."""
    if any(r.get("ok") is False for r in results):
        return "failed"
    if any(r.get("ok") is None and not r.get("unverified") for r in results):
        return "pending"
    if any(r.get("unverified") for r in results):
        return "unverified"
    return "passed"


def summary(report: dict) -> dict[str, Any]:
    """The columns of a validation row that summarise its report: errors, method, num_params."""
    return {
        "errors": _report_errors(report),
        "method": _first(report, "method"),
        "num_params": _sum_params(report),
    }


def _report_errors(report: dict) -> list[str]:
    out = []
    for a in report.get("adapters", []):
        where = a.get("folder") or "adapter"
        out += [f"{where}: {e}" for e in a.get("errors", [])]
    return out


def _first(report: dict, key: str):
    for a in report.get("adapters", []):
        if a.get(key) is not None:
            return a[key]
    return None


def _sum_params(report: dict) -> int | None:
    vals = [a["num_params"] for a in report.get("adapters", []) if a.get("num_params") is not None]
    return sum(vals) if vals else None


def finish_in_background(hub: Hub, commit_oid: str, report: dict, pairs: list) -> None:
    """The upload stopped waiting: record the result when the load checks finish (flags failed commits)."""
    lock = threading.Lock()
    left = [len(pairs)]

    def done(fut: cf.Future, entry: dict) -> None:
        res = fut.result() if not fut.cancelled() else {"ok": None, "errors": ["validation cancelled"]}
        with lock:
            entry.update(res)
            left[0] -= 1
            if left[0]:
                return
        try:
            status = hub.record_validation(commit_oid, report)
            log.info("validation of %s finished: %s", commit_oid, status)
        except Exception:  # noqa: BLE001
            log.exception("could not record the validation of %s", commit_oid)

    for fut, entry in pairs:
        fut.add_done_callback(lambda f, e=entry: done(f, e))


def record_validation(hub: Hub, commit_oid: str, report: dict, owner: str | None = None) -> str | None:
    """Store the result of a validation; returns its status. With ``owner`` (a validation worker), only while
    that worker still holds the validation (None otherwise: its claim expired and another worker took it)."""
    report = {k: v for k, v in report.items() if not k.startswith("_")}
    status = status_of(report.get("adapters", []))
    with hub.db.session() as s:
        v = s.get(Validation, commit_oid, with_for_update=owner is not None)
        if v is None:
            return status
        if owner is not None and v.claimed_by != owner:
            return None
        v.claimed_by, v.lease_until = None, None
        v.status, v.report, v.updated_at = status, report, utcnow()
        for column, value in summary(report).items():
            setattr(v, column, value)
    return status


def revalidate(hub: Hub, commit_oid: str, wait: float = 0.0, owner: str | None = None) -> str | None:
    """Validate a stored commit again: in the background (``wait=0``, at start-up for unfinished validations),
    or until done (``wait=math.inf``, a validation worker ``owner`` that holds the validation; the status is
    None if its claim was lost meanwhile). Results already in the stored report are reused."""
    with hub.db.session() as s:
        c = s.get(Commit, commit_oid)
        if c is None:
            return "missing"
        stored = get_validation(s, commit_oid)
        earlier = dict(stored.report or {}) if stored is not None else {}
        author = s.get(Account, c.author_id) if c.author_id else None
        caller = Caller(account=author, scope="read")
        if author is not None:
            s.expunge(author)
        tree = {p: TreeEntry(f.blob.sha256, f.blob.size, f.blob.git_oid) for p, f in commit_tree(c).items()}
        adapters, errors = checks_before_storing(s, hub, caller, tree)
    if errors:
        return hub.record_validation(
            commit_oid,
            {"kind": "adapter", "adapters": [{"folder": "", "ok": False, "errors": errors}]},
            owner,
        )
    status, report = load_checks(hub, tree, adapters, earlier, wait=wait)
    running = report.pop("_futures", [])
    if running:
        finish_in_background(hub, commit_oid, report, running)
        return status
    return hub.record_validation(commit_oid, report, owner)


def run_load_check(job_dir: Path, base_config: dict, dialect: str = "adapterhub") -> dict[str, Any]:
    """The load check of one adapter folder (runs in a worker thread). Deletes ``job_dir`` when done.
    ``ok`` is True or False, or None with ``unverified`` when this server cannot check that kind of adapter."""
    try:
        try:
            from adapterhub.library.validate import validate_adapter
        except ImportError as e:
            return {
                "ok": None,
                "unverified": True,
                "errors": [f"the load check is not available on this server ({e})"],
            }
        try:
            rep = validate_adapter(job_dir, base_config)
        except Exception as e:  # noqa: BLE001 - any failure of the load check is a failed validation
            log.warning("load check crashed: %s", e, exc_info=True)
            return {"ok": False, "errors": [f"the adapter could not be loaded: {type(e).__name__}: {e}"]}
        if dialect == "peft" and not rep.ok and not _library_reads_peft(job_dir):
            # a PEFT method the library cannot load: no verdict on the adapter
            return {
                "ok": None,
                "unverified": True,
                "method": rep.method,
                "errors": [],
                "notes": list(rep.errors),
            }
        out = {
            "ok": bool(rep.ok),
            "errors": list(rep.errors),
            "method": rep.method,
            "num_params": int(rep.num_params),
            "missing_keys": list(rep.missing_keys),
            "unexpected_keys": list(rep.unexpected_keys),
            "changed_modules": int(rep.changed_modules),
        }
        # The hub's own rules, whatever the report says.
        if out["missing_keys"]:
            out["errors"].append(f"{len(out['missing_keys'])} missing keys, e.g. {out['missing_keys'][:3]}")
        if out["unexpected_keys"]:
            out["errors"].append(
                f"{len(out['unexpected_keys'])} unexpected keys (weights do not match the config), "
                f"e.g. {out['unexpected_keys'][:3]}"
            )
        if out["changed_modules"] < 1:
            out["errors"].append("loading the adapter changed no module of the model")
        out["errors"] = list(dict.fromkeys(out["errors"]))
        out["ok"] = out["ok"] and not out["errors"]
        return out
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)


def _library_reads_peft(folder: Path) -> bool:
    """Whether the library has a method for the ``peft_type`` of the PEFT adapter in ``folder`` (an unreadable
    config counts as readable: the library's verdict on it stands)."""
    from adapterhub.library.errors import AdapterConfigError
    from adapterhub.library.methods.base import method_for_peft

    try:
        peft_type = json.loads((folder / "adapter_config.json").read_text())["peft_type"]
        method_for_peft(peft_type)
    except AdapterConfigError:
        return False
    except (OSError, ValueError, KeyError, TypeError):
        return True
    return True


class Validator:
    """The validation worker: a small thread pool owned by the server process."""

    def __init__(self, workers: int, tmp_root: Path):
        self.pool = cf.ThreadPoolExecutor(max(1, workers), thread_name_prefix="adapterhub-validate")
        self.tmp_root = Path(tmp_root)
        self.tmp_root.mkdir(parents=True, exist_ok=True)

    def new_job_dir(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="validate-", dir=self.tmp_root))

    def submit(self, job_dir: Path, base_config: dict, dialect: str = "adapterhub") -> cf.Future:
        return self.pool.submit(run_load_check, job_dir, base_config, dialect)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
