"""Pushing adapters to a hub: the adapter, its head, a model card, one commit, and (optionally) the wait for
the hub's validation result."""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from .cache import Cache
from .errors import HubHTTPError, IdentifierError, ValidationFailedError
from .http import HubClient, check_repo_id
from .settings import resolve_settings

CARD = "README.md"
DONE = ("passed", "failed", "skipped")


@dataclasses.dataclass
class PushResult:
    repo_id: str
    commit: str
    url: str  # the adapter's page on the hub
    validation: str  # passed | failed | pending | skipped | unknown
    validation_errors: list[str] = dataclasses.field(default_factory=list)
    tag: str | None = None

    @property
    def identifier(self) -> str:
        return f"{self.repo_id}@{self.commit}"


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def card_text(
    repo_id: str,
    *,
    base_model: str,
    method: str | None = None,
    adapter_name: str | None = None,
    task: str | None = None,
    subtask: str | None = None,
    language: str | list[str] | None = None,
    dataset: str | list[str] | None = None,
    metrics: dict[str, float] | None = None,
    license: str | None = None,
    tags: list[str] | None = None,
    description: str | None = None,
    head: str | None = None,
    labels: list[str] | None = None,
    endpoint: str | None = None,
) -> str:
    """A model card: YAML front matter (what the hub indexes) and a short body with a usage snippet."""
    if subtask and not task:
        raise IdentifierError("a subtask needs its task (task=..., e.g. task='sentiment', subtask='sst-2')")
    all_tags = ["adapterhub", "adapters"] + ([method] if method else [])
    if task:
        all_tags.append(f"adapterhub:{task}/{subtask}" if subtask else f"adapterhub:{task}")
    all_tags += [t for t in _as_list(tags) if t not in all_tags]
    meta: dict[str, Any] = {"library_name": "adapterhub", "base_model": base_model, "tags": all_tags}
    for key, value in (
        ("task", task),
        ("subtask", subtask),
        ("adapter_name", adapter_name),
        ("method", method),
        ("head_type", head),
        ("license", license),
    ):
        if value:
            meta[key] = value
    datasets = _as_list(dataset) or ([subtask] if subtask else [])
    if datasets:
        meta["datasets"] = datasets
    if language:
        meta["language"] = _as_list(language)
    if metrics:
        bad = [k for k, v in metrics.items() if not isinstance(v, (int, float)) or isinstance(v, bool)]
        if bad:
            raise IdentifierError(f"metrics must be numbers; not: {', '.join(map(str, bad))}")
        meta["metrics"] = {str(k): float(v) for k, v in metrics.items()}
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    what = f"a {method} adapter" if method else "an adapter"
    body = [
        f"# {repo_id}",
        "",
        description
        or f"{what.capitalize()} for `{base_model}`"
        + (f", trained for {task}" + (f"/{subtask}" if subtask else "") if task else "")
        + ".",
        "",
    ]
    if labels:
        body += [f"Labels: {', '.join(labels)}.", ""]
    if metrics:
        body += (
            ["| metric | value |", "|---|---|"] + [f"| {k} | {v:.4f} |" for k, v in metrics.items()] + [""]
        )
    snippet_ep = f', endpoint="{endpoint}"' if endpoint else ""
    body += [
        "## Usage",
        "",
        "```python",
        "import adapterhub",
        "from transformers import AutoModel",
        "",
        f'model = AutoModel.from_pretrained("{base_model}")',
        "adapterhub.init(model)",
        f'model.load_adapter("{repo_id}"{snippet_ep}, set_active=True)',
        "```",
        "",
    ]
    return f"---\n{front}---\n\n" + "\n".join(body)


def _files_of(folder: Path) -> dict[str, Path]:
    files = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts):
            files[p.relative_to(folder).as_posix()] = p
    return files


def push_folder(
    folder: str | Path,
    repo_id: str,
    *,
    endpoint: str | None = None,
    token: str | None = None,
    private: bool = False,
    branch: str = "main",
    commit_message: str | None = None,
    card: str | None = None,
    tag: str | None = None,
    wait_for_validation: bool = True,
    timeout: float = 300.0,
    delete_missing: bool = True,
    progress: bool | None = None,
) -> PushResult:
    """Commit every file of ``folder`` (plus ``card`` as README.md when given) to ``repo_id`` on the hub,
    creating the repository if needed; files of the repository that are not in ``folder`` are deleted
    (``delete_missing``). Waits for the hub's validation result unless ``wait_for_validation=False``."""
    check_repo_id(repo_id)
    folder = Path(folder)
    if not folder.is_dir():
        raise IdentifierError(f"nothing to push: {folder} is not a folder")
    files: dict[str, bytes | Path] = dict(_files_of(folder))
    if card is not None:
        files[CARD] = card.encode("utf-8")
    if not files:
        raise IdentifierError(f"nothing to push: {folder} is empty")
    pickles = [p for p in files if p.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))]
    if pickles:
        raise IdentifierError(
            f"refusing to push pickle files ({', '.join(pickles)}): the hub takes safetensors "
            "only; save with use_safetensors=True"
        )
    settings = resolve_settings(endpoint=endpoint, token=token)
    if not settings.token:
        raise IdentifierError(
            f"pushing to {settings.endpoint} needs a write token: pass token=..., set "
            "ADAPTERHUB_TOKEN or run `adapterhub login`"
        )
    with HubClient(settings) as client:
        client.create_repo(repo_id, private=private)
        deletions: list[str] = []
        if delete_missing:
            try:
                current = [
                    s["rfilename"]
                    for s in client.model_info(repo_id, branch, blobs=False).get("siblings", [])
                ]
            except HubHTTPError:
                current = []
            deletions = [p for p in current if p not in files and p != ".gitattributes"]
        answer = client.commit(
            repo_id,
            files,
            commit_message or f"Upload adapter to {repo_id}",
            branch=branch,
            deletions=deletions,
            progress=progress,
        )
        commit = str(answer.get("commitOid") or "")
        status = str(answer.get("validation") or "unknown")
        errors: list[str] = []
        if wait_for_validation and status not in DONE:
            status, errors = wait_for_validation_result(client, repo_id, commit, timeout)
        elif status == "failed":
            status, errors = wait_for_validation_result(client, repo_id, commit, 0)
        if tag:
            client.create_tag(repo_id, tag, commit)
        cache = Cache(settings.cache_dir)  # identifiers resolved before the push must be asked again
        cache.forget_resolutions(settings.endpoint, repo_id)
        cache.repo(settings.endpoint, repo_id).set_ref(branch, commit)
        if tag:
            cache.repo(settings.endpoint, repo_id).set_ref(tag, commit)
        result = PushResult(repo_id, commit, f"{settings.endpoint}/{repo_id}", status, errors, tag)
    if wait_for_validation and status == "failed":
        raise ValidationFailedError(
            f"{repo_id}@{commit}: the hub flagged the upload as failing validation:\n- "
            + "\n- ".join(errors or ["(no details)"])
        )
    return result


def wait_for_validation_result(
    client: HubClient, repo_id: str, commit: str, timeout: float
) -> tuple[str, list[str]]:
    """Poll ``/api/models/{repo}/validation/{commit}`` until it is passed/failed/skipped or ``timeout`` s pass."""
    deadline = time.monotonic() + timeout
    delay = 0.1
    while True:
        answer = client.json(
            "GET", f"/api/models/{repo_id}/validation/{commit}", what=f"validation of {repo_id}"
        )
        status = str(answer.get("status") or "unknown")
        if status in DONE or time.monotonic() >= deadline:
            return status, [str(e) for e in answer.get("errors") or []]
        time.sleep(delay)
        delay = min(delay * 1.5, 2.0)


def _base_model_of(model, base_model: str | None) -> str:
    name = base_model or getattr(model.config, "name_or_path", "") or ""
    if not name or Path(name).expanduser().exists():
        raise IdentifierError(
            "the hub needs the base model's hub id: pass base_model='org/name' (a repository on the hub holding "
            f"the base model's config.json; the model's own name is {name or 'empty'!r}). "
            "adapterhub.client.push_base_model(model, 'org/name') pushes one"
        )
    return name


def rename_base(folder: Path, base_model: str) -> None:
    """Set the base model of every saved config in ``folder`` (configs are written atomically)."""
    from adapterhub.library.saving import write_json

    for path in list(folder.rglob("adapter_config.json")) + list(folder.rglob("head_config.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        data["model_name"] = base_model
        write_json(path, data)


def push_adapter(
    model,
    repo_id: str,
    adapter_name: str,
    *,
    with_head: bool = True,
    base_model: str | None = None,
    task: str | None = None,
    subtask: str | None = None,
    language: str | list[str] | None = None,
    dataset: str | list[str] | None = None,
    metrics: dict[str, float] | None = None,
    license: str | None = None,
    tags: list[str] | None = None,
    description: str | None = None,
    card: str | None = None,
    **push_options: Any,
) -> PushResult:
    """Save ``adapter_name`` (and the task head) from ``model`` and push it with a card; see :func:`push_folder`
    for ``endpoint``, ``token``, ``private``, ``branch``, ``commit_message``, ``tag``, ``wait_for_validation``."""
    state = model.adapterhub_state
    if adapter_name not in state.configs:
        raise IdentifierError(
            f"no adapter named {adapter_name!r} in this model (adapters: "
            f"{', '.join(state.configs) or 'none'})"
        )
    base = _base_model_of(model, base_model)
    config = state.configs[adapter_name]
    with tempfile.TemporaryDirectory(prefix="adapterhub-push-") as tmp:
        folder = Path(tmp)
        model.save_adapter(folder, adapter_name, with_head=with_head)
        rename_base(folder, base)
        head, labels = None, None
        if (folder / "head_config.json").is_file():
            head_cfg = json.loads((folder / "head_config.json").read_text())
            head = head_cfg.get("model_class")
            labels = list((head_cfg.get("label2id") or {}).keys()) or None
        if card is None:
            card = card_text(
                repo_id,
                base_model=base,
                method=getattr(config, "method", None),
                adapter_name=adapter_name,
                task=task,
                subtask=subtask,
                language=language,
                dataset=dataset,
                metrics=metrics,
                license=license,
                tags=tags,
                description=description,
                head=head,
                labels=labels,
                endpoint=resolve_settings(push_options.get("endpoint")).endpoint,
            )
        return push_folder(
            folder,
            repo_id,
            card=card,
            commit_message=push_options.pop("commit_message", None) or f"Upload adapter {adapter_name}",
            **push_options,
        )


def push_adapter_setup(
    model,
    repo_id: str,
    adapter_setup: Any,
    *,
    head_setup: Any = None,
    base_model: str | None = None,
    task: str | None = None,
    subtask: str | None = None,
    language: str | list[str] | None = None,
    dataset: str | list[str] | None = None,
    metrics: dict[str, float] | None = None,
    license: str | None = None,
    tags: list[str] | None = None,
    description: str | None = None,
    **push_options: Any,
) -> PushResult:
    """Push a composed setup (e.g. ``Stack("lang", "task")`` or a ``Fuse``) as written by
    ``model.save_adapter_setup``: ``adapter_setup.json`` and one folder per adapter and fusion layer."""
    from adapterhub.library.composition import parse_setup

    setup = parse_setup(adapter_setup)
    if setup is None:
        raise IdentifierError(
            "push_adapter_setup_to_hub needs a setup (an adapter name, a list, a Stack or a Fuse)"
        )
    base = _base_model_of(model, base_model)
    with tempfile.TemporaryDirectory(prefix="adapterhub-push-") as tmp:
        folder = Path(tmp)
        model.save_adapter_setup(folder, setup, head_setup=head_setup)
        rename_base(folder, base)
        names = setup.names()
        methods = sorted({getattr(model.adapterhub_state.configs[n], "method", "") for n in names} - {""})
        card = card_text(
            repo_id,
            base_model=base,
            method=methods[0] if len(methods) == 1 else None,
            adapter_name="+".join(names),
            task=task,
            subtask=subtask,
            language=language,
            dataset=dataset,
            metrics=metrics,
            license=license,
            tags=list(tags or []) + ["adapter-setup"],
            description=description or f"A composed adapter setup: {setup!r}.",
        )
        return push_folder(
            folder,
            repo_id,
            card=card,
            commit_message=push_options.pop("commit_message", None) or f"Upload adapter setup {setup!r}",
            **push_options,
        )


def push_base_model(model_or_config, repo_id: str, **push_options: Any) -> PushResult:
    """Register a base model on the hub: a repository holding its ``config.json`` (no weights), which is all the
    hub needs to validate adapters for it."""
    config = getattr(model_or_config, "config", model_or_config)
    with tempfile.TemporaryDirectory(prefix="adapterhub-base-") as tmp:
        config.to_json_file(str(Path(tmp) / "config.json"))
        push_options.setdefault("wait_for_validation", False)
        return push_folder(
            tmp,
            repo_id,
            commit_message=push_options.pop("commit_message", None) or "Register base model config",
            **push_options,
        )
