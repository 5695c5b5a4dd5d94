"""Search (facets, full text, sort, pagination, visibility) and resolve of every AdapterHub identifier form,
on the imported legacy index plus hub repositories indexed from real fixture files (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

from adapterhub.server.indexing import index_commit
from adapterhub.server.index_models import IndexEntry
from adapterhub.server.models import Account, Blob, Commit, CommitFile, Ref, Repo
from adapterhub.server.resolve import ResolveError, resolve
from adapterhub.server.search_query import SearchQuery, Viewer
from adapterhub.server.search_service import search, taxonomy
from adapterhub.server.storage import LocalBlobStore
from adapterhub.server.taxonomy import seed

try:
    from test_index import INTEROP, LEGACY, IndexTestDatabase
except ImportError:  # tests/ as a package
    from tests.server.test_index import INTEROP, LEGACY, IndexTestDatabase

pytestmark = pytest.mark.skipif(not (LEGACY.is_dir() and INTEROP.is_dir()), reason="../shared data missing")

T0 = dt.datetime(2026, 1, 1)


class Repos:
    """Writes core rows (account, repo, blobs, commits, refs) the way the core commit pipeline does, then
    indexes each commit with `index_commit` (the post-commit hook's work)."""

    def __init__(self, db, store: LocalBlobStore):
        self.db, self.store, self.n = db, store, 0

    def put_blob(self, s, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if not self.store.exists(sha):
            tmp = self.store.root / f"tmp-{sha}"
            tmp.write_bytes(data)
            self.store.put_file(tmp, sha, len(data))
        if s.get(Blob, sha) is None:
            s.add(Blob(sha256=sha, size=len(data), git_oid=hashlib.sha1(data).hexdigest()))
        return sha

    def commit(
        self,
        repo_id: str,
        files: dict[str, bytes],
        *,
        branch: str = "main",
        tag: str | None = None,
        private: bool = False,
        downloads: int = 0,
    ) -> str:
        ns, name = repo_id.split("/")
        with self.db.session() as s:
            owner = s.scalar(select(Account).where(Account.name == ns))
            if owner is None:
                owner = Account(name=ns, kind="user")
                s.add(owner)
                s.flush()
            repo = s.scalar(select(Repo).where(Repo.namespace == ns, Repo.name == name))
            if repo is None:
                repo = Repo(namespace=ns, name=name, owner_id=owner.id, private=private, downloads=downloads)
                s.add(repo)
                s.flush()
            self.n += 1
            oid = hashlib.sha1(f"{repo_id}{self.n}".encode()).hexdigest()
            c = Commit(oid=oid, repo_id=repo.id, title="t", created_at=T0 + dt.timedelta(hours=self.n))
            s.add(c)
            s.flush()
            for path, data in files.items():
                s.add(CommitFile(commit_oid=oid, path=path, blob_sha256=self.put_blob(s, data)))
            s.flush()
            for kind, ref_name in (("branch", branch), ("tag", tag)):
                if not ref_name:
                    continue
                ref = s.scalar(
                    select(Ref).where(Ref.repo_id == repo.id, Ref.kind == kind, Ref.name == ref_name)
                )
                if ref is None:
                    s.add(Ref(repo_id=repo.id, kind=kind, name=ref_name, commit_oid=oid))
                else:
                    ref.commit_oid = oid
            s.flush()
            s.expire_all()
            index_commit(s, s.get(Repo, repo.id), s.get(Commit, oid), self.store, branch=branch)
        return oid


def folder(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def card(**front) -> bytes:
    return ("---\n" + yaml.safe_dump(front) + "---\n\nAn adapter.\n").encode()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def shared_db(request, tmp_path_factory):
    """One database per module and backend, for the tests that only read."""
    db = IndexTestDatabase(request.param, tmp_path_factory.mktemp("search"))
    yield db
    db.drop()


def build_hub_index(db, tmp_path):
    """The legacy index plus a few hub repositories built from the real fixture files."""
    with db.session() as s:
        seed(s, LEGACY)
    r = Repos(db, LocalBlobStore(tmp_path / "blobs"))
    seq = folder(INTEROP / "bert/adapters/seq_bn-flexhead/safetensors")
    lora = folder(INTEROP / "bert/adapters/lora/safetensors")
    peft = folder(INTEROP / "bert/peft/lora_qv-seqcls")
    common = dict(base_model="bert-base-uncased", license="apache-2.0", language="en")
    r.oids = {}
    r.oids["v1"] = r.commit(
        "alice/sst2-seqbn",
        {**seq, "README.md": card(task="sentiment", subtask="sst-2", **common)},
        tag="v1",
        downloads=50,
    )
    r.oids["v2"] = r.commit(
        "alice/sst2-seqbn",
        {**lora, "README.md": card(task="sentiment", subtask="sst-2", **common)},
        downloads=50,
    )
    r.oids["peft"] = r.commit(
        "bob/imdb-lora",
        {**peft, "README.md": card(task="sentiment", subtask="imdb", metrics={"accuracy": 0.93}, **common)},
        downloads=500,
    )
    r.oids["private"] = r.commit(
        "carol/secret-adapter", {**seq, "README.md": card(task="nli", subtask="rte", **common)}, private=True
    )
    r.oids["dev"] = r.commit("bob/imdb-lora", {**seq}, branch="dev")
    return r


@pytest.fixture(scope="module")
def hub_index(shared_db, tmp_path_factory):
    return build_hub_index(shared_db, tmp_path_factory.mktemp("blobs"))


@pytest.fixture
def index_db(shared_db):
    return shared_db


def legacy_score(path: Path) -> float | None:
    card = yaml.safe_load(path.read_text())
    return next(
        (
            f["score"]
            for f in card["files"]
            if str(f["version"]) == str(card["default_version"]) and "score" in f
        ),
        None,
    )


def ids(result) -> list[str]:
    return [e.full_name for e in result.items]


# ------------------------------------------------------------------------------------------------- search
def test_facets_filters_and_counts(index_db, hub_index):
    with index_db.session() as s:
        res = search(s, SearchQuery())
        assert res.total == 291 + 2  # legacy cards + public hub adapters; the private one is hidden
        facets = {k: dict(v) for k, v in res.facets.items()}
        assert facets["source"] == {"legacy": 291, "hub": 2}
        assert facets["library"]["peft"] == 1
        assert facets["author"]["ukp"] == 272
        res = search(s, SearchQuery(filters={"task": "sentiment"}))
        assert {"alice/sst2-seqbn", "bob/imdb-lora", "ukp/bert-base-uncased_sentiment_sst-2_pfeiffer"} <= set(
            e.full_name for e in search(s, SearchQuery(filters={"task": "sentiment"}, per_page=100)).items
        )
        facets = {k: dict(v) for k, v in res.facets.items()}
        # a facet is counted under all *other* filters: the task facet still shows other tasks
        assert facets["task"]["sentiment"] == res.total and len(facets["task"]) > 1
        assert sum(facets["subtask"].values()) == res.total
        res = search(
            s,
            SearchQuery(
                filters={"task": "sentiment", "base_model": "bert-base-uncased", "method": "lora"},
                sort="name",
            ),
        )
        assert ids(res) == ["alice/sst2-seqbn", "bob/imdb-lora"]  # alice's main commit is the LoRA one
        res = search(s, SearchQuery(filters={"method": "lora", "library": "adapters"}))
        assert ids(res) == ["alice/sst2-seqbn"]
        res = search(s, SearchQuery(filters={"head": "classification", "library": "peft"}))
        assert ids(res) == ["bob/imdb-lora"]
        res = search(
            s, SearchQuery(filters={"language": "ar", "model_type": "bert", "license": "apache-2.0"})
        )
        assert res.total == 0
        assert search(s, SearchQuery(filters={"language": "ar"})).total == 7
        with pytest.raises(ValueError, match="unknown filter"):
            search(s, SearchQuery(filters={"colour": "red"}))
        # small hit sets count facets in one pass; the per-facet GROUP BY path gives the same answer
        from adapterhub.server.search_facets import facet_counts
        from adapterhub.server.search_query import text_match

        # (and on PostgreSQL, GROUPING SETS for broad queries give the same answer as well)
        from adapterhub.server.search_facets import _grouping_sets
        from adapterhub.server.search_query import FACETS, conditions

        for q in (
            SearchQuery(filters={"task": "sentiment", "author": "ukp"}),
            SearchQuery(q="bert wiki"),
            SearchQuery(q="sst", filters={"method": "seq_bn"}),
            SearchQuery(),
        ):
            tf = text_match(s, q.q)
            total = search(s, SearchQuery(q=q.q, filters=q.filters, facets=False)).total
            assert facet_counts(s, q, None, tf, total) == facet_counts(s, q, None, tf, None), q
            names = [n for n in FACETS if n not in q.filters]
            slow = {}
            for n in names:  # one GROUP BY per facet, by hand
                col = FACETS[n]
                rows = s.execute(
                    select(col, func.count())
                    .where(*conditions(s, q, None, text_filter=tf), col.is_not(None))
                    .group_by(col)
                ).all()
                slow[n] = sorted(((str(v), c) for v, c in rows), key=lambda kv: (-kv[1], kv[0]))[:30]
            assert facet_counts(s, q, None, tf, total) == {**facet_counts(s, q, None, tf, total), **slow}
            if s.get_bind().dialect.name == "postgresql":
                assert _grouping_sets(s, names, conditions(s, q, None, text_filter=tf)) == slow


def test_full_text_sort_and_pagination(index_db, hub_index):
    with index_db.session() as s:
        res = search(s, SearchQuery(q="SST-2 pfeiffer roberta", sort="name"))
        assert ids(res) == ["ukp/roberta-base-sst_pfeiffer", "ukp/roberta-large-sst_pfeiffer"]
        # the full-text index (FTS5 trigram on SQLite, pg_trgm on PostgreSQL) answers exactly like a scan
        texts = [
            t
            for (t,) in s.execute(
                select(IndexEntry.search_text).where(
                    IndexEntry.is_adapter.is_(True), IndexEntry.private.is_(False)
                )
            )
        ]
        for q in ("sst", "houlsby ar", "multilingual-cased wiki_", "ukp imdb", "lora alice/sst2"):
            expected = sum(all(w in t for w in q.split()) for t in texts)
            assert search(s, SearchQuery(q=q.upper(), facets=False)).total == expected > 0, q
        assert search(s, SearchQuery(q="100%")).total == 0  # LIKE wildcards are escaped
        assert search(s, SearchQuery(q="zz_zz")).total == 0
        res = search(s, SearchQuery(sort="downloads", per_page=2))
        assert ids(res) == ["bob/imdb-lora", "alice/sst2-seqbn"]
        res = search(s, SearchQuery(sort="recent", per_page=1))
        assert ids(res) == ["bob/imdb-lora"]  # its main commit is the newest hub commit (dev does not count)
        res = search(s, SearchQuery(sort="score", filters={"task": "qa"}, per_page=100))
        scores = [e.score for e in res.items]  # legacy cards' dev scores; entries without a score come last
        expected = sorted(
            (
                legacy_score(p)
                for p in (LEGACY / "adapters").rglob("*.y*ml")
                if yaml.safe_load(p.read_text())["task"] == "qa"
            ),
            key=lambda x: (x is None, -(x or 0)),
        )
        assert scores == expected and scores[0] > 80 and scores[-1] is None
        res = search(s, SearchQuery(sort="score", filters={"task": "sentiment"}, per_page=1))
        assert ids(res) == ["bob/imdb-lora"] and res.items[0].score == 0.93  # from the card's metrics
        # pagination: disjoint pages that cover everything, in a stable order
        seen = []
        for page in range(1, 5):
            seen += ids(
                search(
                    s,
                    SearchQuery(
                        filters={"author": "ukp", "task": "sentiment"},
                        sort="name",
                        page=page,
                        per_page=5,
                        facets=False,
                    ),
                )
            )
        total = search(s, SearchQuery(filters={"author": "ukp", "task": "sentiment"})).total
        assert len(seen) == len(set(seen)) == min(total, 20) and seen == sorted(seen)
        with pytest.raises(ValueError, match="unknown sort"):
            search(s, SearchQuery(sort="random"))


def test_private_repos_only_for_their_owner(index_db, hub_index):
    with index_db.session() as s:
        carol = s.scalar(select(Account).where(Account.name == "carol"))
        bob = s.scalar(select(Account).where(Account.name == "bob"))
        q = SearchQuery(filters={"author": "carol"})
        assert search(s, q).total == 0
        assert search(s, q, Viewer(account_ids=(bob.id,))).total == 0
        assert ids(search(s, q, Viewer(account_ids=(carol.id,)))) == ["carol/secret-adapter"]
        assert search(s, q, Viewer(admin=True)).total == 1
        with pytest.raises(ResolveError) as e:
            resolve(s, "@carol/secret-adapter")
        assert e.value.status == 404
        assert (
            resolve(s, "@carol/secret-adapter", viewer=Viewer(account_ids=(carol.id,))).commit
            == hub_index.oids["private"]
        )


def test_taxonomy_counts(index_db, hub_index):
    with index_db.session() as s:
        t = taxonomy(s)
    tasks = {x.name: x for x in t.tasks}
    assert len(tasks) == 123 and tasks["sentiment"].displayname == "Sentiment Analysis"
    sst = {st.name: st for st in tasks["sentiment"].subtasks}["sst-2"]
    # 12 legacy sst-2 cards (roberta's are filed under subtask "sst") + alice's repository
    assert sst.count == 1 + sum(
        1 for p in (LEGACY / "adapters").rglob("*.y*ml") if "subtask: sst-2" in p.read_text()
    )
    assert {x.code: x.count for x in t.languages}["ar"] == 7


# ------------------------------------------------------------------------------------------------ resolve
def test_resolve_legacy_task_identifier(index_db, hub_index):
    with index_db.session() as s:
        r = resolve(s, "sentiment/sst-2@ukp", model_name="bert-base-uncased", config="9076f36a74755ac4")
        assert r.repo_id == "ukp/bert-base-uncased_sentiment_sst-2_pfeiffer" and r.source == "legacy"
        assert (
            r.commit is None and r.version == "1" and not r.downloadable and "cannot be downloaded" in r.note
        )
        assert r.files[0]["url"].endswith(".zip")
        # same with the preset name and with a full adapter_config.json
        cfg = json.loads((INTEROP / "bert/adapters/seq_bn/safetensors/adapter_config.json").read_text())
        for config in ("seq_bn", "pfeiffer", json.dumps(cfg)):
            assert (
                resolve(s, "sentiment/sst-2@ukp", model_name="bert-base-uncased", config=config).repo_id
                == r.repo_id
            )
        # no config: pfeiffer and houlsby both exist -> ambiguous, never a silent pick
        with pytest.raises(ResolveError) as e:
            resolve(s, "sentiment/sst-2@ukp", model_name="bert-base-uncased")
        assert e.value.status == 409 and "config" in e.value.message
        assert any("bert-base-uncased_sentiment_sst-2_houlsby" in c for c in e.value.candidates)
        # without the org, alice's hub repository matches too
        with pytest.raises(ResolveError) as e:
            resolve(s, "sentiment/sst-2", model_name="bert-base-uncased")
        assert e.value.status == 409 and any(c.startswith("alice/sst2-seqbn") for c in e.value.candidates)


def test_resolve_no_fallback_to_other_config_or_model(index_db, hub_index):
    with index_db.session() as s:
        with pytest.raises(ResolveError) as e:
            resolve(
                s, "sentiment/sst-2@ukp", model_name="bert-base-uncased", config="625403edad0bf919"
            )  # lora
        assert e.value.status == 404 and "no fallback" in e.value.message
        assert len(e.value.candidates) == 2  # the pfeiffer and houlsby cards are listed
        with pytest.raises(ResolveError) as e:
            resolve(s, "sentiment/sst-2@ukp", model_name="bert-large-cased", config="seq_bn")
        assert e.value.status == 404 and "other base models" in e.value.message
        with pytest.raises(ResolveError) as e:
            resolve(s, "sentiment/no-such-dataset@ukp")
        assert e.value.status == 404 and "sentiment/sst-2" in e.value.candidates
        with pytest.raises(ResolveError) as e:
            resolve(s, "a/b/c")
        assert e.value.status == 400


def test_resolve_at_org_name_and_versions(index_db, hub_index):
    with index_db.session() as s:
        r = resolve(s, "@ukp/bert-base-multilingual-cased-ar-wiki_houlsby")
        assert r.version == "nd" and r.method == "double_seq_bn"  # the card's default version
        assert resolve(s, "@ukp/bert-base-multilingual-cased-ar-wiki_houlsby", version="wd").version == "wd"
        with pytest.raises(ResolveError) as e:
            resolve(s, "@ukp/bert-base-multilingual-cased-ar-wiki_houlsby", version="v9")
        assert e.value.status == 404 and len(e.value.candidates) == 2
        with pytest.raises(ResolveError) as e:
            resolve(s, "@ukp/no-such-card")
        assert e.value.status == 404 and e.value.candidates  # lists the org's cards
        # the language adapter by its task form: its card overrides houlsby (gelu, reduction factor 2), so the
        # plain houlsby config is not it (and nothing else is picked instead)
        with pytest.raises(ResolveError) as e:
            resolve(s, "ar/wiki@ukp", model_name="bert-base-multilingual-cased", config="houlsby")
        assert e.value.status == 404 and len(e.value.candidates) == 3
        cfg = {
            **json.loads(
                (INTEROP / "bert/adapters/double_seq_bn/safetensors/adapter_config.json").read_text()
            )["config"],
            "non_linearity": "gelu",
            "reduction_factor": 2,
        }
        r = resolve(s, "ar/wiki@ukp", model_name="bert-base-multilingual-cased", config=json.dumps(cfg))
        assert r.repo_id == "ukp/bert-base-multilingual-cased-ar-wiki_houlsby"


def test_resolve_hub_repo_revisions(index_db, hub_index):
    oids = hub_index.oids
    with index_db.session() as s:
        r = resolve(s, "alice/sst2-seqbn")
        assert r.source == "hub" and r.commit == oids["v2"] and r.method == "lora" and r.downloadable
        assert r.download_url == f"/alice/sst2-seqbn/resolve/{oids['v2']}/"
        r = resolve(s, "alice/sst2-seqbn@v1")  # a tag pins the first version, with its own config
        assert r.commit == oids["v1"] and r.method == "seq_bn" and r.config_hash == "9076f36a74755ac4"
        assert resolve(s, "alice/sst2-seqbn@" + oids["v1"][:10]).commit == oids["v1"]
        assert resolve(s, "@alice/sst2-seqbn", version="v1", config="seq_bn").commit == oids["v1"]
        # main has LoRA now: asking for seq_bn at main is an error, not a silent switch to v1
        with pytest.raises(ResolveError) as e:
            resolve(s, "alice/sst2-seqbn", config="seq_bn")
        assert e.value.status == 404 and "no other version is tried" in e.value.message
        with pytest.raises(ResolveError) as e:
            resolve(s, "alice/sst2-seqbn@nope")
        assert (
            e.value.status == 404 and "branch:main" in e.value.candidates and "tag:v1" in e.value.candidates
        )
        r = resolve(s, "bob/imdb-lora@dev")
        assert r.commit == oids["dev"] and r.method == "seq_bn"
        assert resolve(s, "bob/imdb-lora").commit == oids["peft"]  # main did not move
        with pytest.raises(ResolveError) as e:
            resolve(s, "bob/imdb-lora", model_name="roberta-base")
        assert e.value.status == 404 and "bert-base-uncased" in e.value.message


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_resolve_repo_vs_task_ambiguity(kind, tmp_path):
    db = IndexTestDatabase(kind, tmp_path)
    try:
        _repo_vs_task(db, build_hub_index(db, tmp_path))
    finally:
        db.drop()


def _repo_vs_task(index_db, hub_index):
    # a repository named like a task/subtask pair makes the short form ambiguous
    hub_index.commit("sentiment/imdb", {**folder(INTEROP / "bert/adapters/seq_bn/safetensors")})
    with index_db.session() as s:
        with pytest.raises(ResolveError) as e:
            resolve(s, "sentiment/imdb")
        assert e.value.status == 409 and "@sentiment/imdb" in e.value.message
        assert resolve(s, "@sentiment/imdb").repo_id == "sentiment/imdb"
        entry = s.scalar(select(IndexEntry).where(IndexEntry.full_name == "sentiment/imdb"))
        assert entry.base_model is None and entry.method == "seq_bn"
    # a real repository that takes a legacy card's name replaces the metadata-only entry; seeding again skips it
    name = "ukp/bert-base-uncased_sentiment_sst-2_pfeiffer"
    oid = hub_index.commit(name, {**folder(INTEROP / "bert/adapters/seq_bn/safetensors")})
    with index_db.session() as s:
        assert seed(s, LEGACY, force=True).skipped == 1
    with index_db.session() as s:
        rows = list(s.scalars(select(IndexEntry).where(IndexEntry.full_name == name)))
        assert [(e.source, e.commit_oid, e.downloadable) for e in rows] == [("hub", oid, True)]
    # re-indexing every repository (python -m adapterhub.server.taxonomy --reindex) rebuilds lost rows
    from adapterhub.server.indexing import reindex_all

    with index_db.session() as s:
        before = {
            e.full_name: (e.commit_oid, e.method)
            for e in s.scalars(select(IndexEntry).where(IndexEntry.source == "hub"))
        }
        for e in s.scalars(select(IndexEntry).where(IndexEntry.source == "hub")):
            s.delete(e)
    assert reindex_all(index_db, hub_index.store) == len(before) == 5
    with index_db.session() as s:
        after = {
            e.full_name: (e.commit_oid, e.method)
            for e in s.scalars(select(IndexEntry).where(IndexEntry.source == "hub"))
        }
        assert after == before
        assert search(s, SearchQuery(q="imdb seq_bn sentiment", filters={"source": "hub"})).total == 1


# ------------------------------------------------------------------------------------ through the live hub
def upload_adapter(live_hub, repo_id: str, src: Path, **front) -> tuple[dict[str, bytes], str]:
    """Pushes the tiny BERT's config.json as base model `alice/tiny-bert` (once), then `src` plus a card naming
    it, with huggingface_hub; returns the uploaded files and the commit id."""
    from huggingface_hub import CommitOperationAdd

    api = live_hub.api("alice")
    if not api.repo_exists("alice/tiny-bert"):
        api.create_repo("alice/tiny-bert")
        api.upload_file(
            path_or_fileobj=str(INTEROP / "bert/base/config.json"),
            path_in_repo="config.json",
            repo_id="alice/tiny-bert",
        )
    files = {**folder(src), "README.md": card(base_model="alice/tiny-bert", **front)}
    api.create_repo(repo_id, exist_ok=True)
    info = api.create_commit(
        repo_id, [CommitOperationAdd(p, d) for p, d in files.items()], commit_message="add"
    )
    return files, info.oid


def test_live_upload_is_indexed_and_searchable(live_hub):
    """An upload through the HF protocol (huggingface_hub) lands in the index via the post-commit hook, and
    the JSON API answers search and resolve for it; the legacy index was seeded at start."""
    import httpx

    api = live_hub.api("alice")
    src, oid = upload_adapter(
        live_hub,
        "alice/idx-seqbn",
        INTEROP / "bert/adapters/seq_bn-seqcls/safetensors",
        task="sentiment",
        subtask="sst-2",
    )
    with httpx.Client(base_url=live_hub.url) as c:
        r = c.get("/api/adapters", params={"author": "alice", "q": "seq_bn"})
        assert r.status_code == 200, r.text
        body = r.json()
        item = next(i for i in body["items"] if i["id"] == "alice/idx-seqbn")
        assert item["commit"] == oid and item["method"] == "seq_bn" and item["head"] == "classification"
        assert item["size_bytes"] == sum(len(v) for v in src.values())
        assert item["base_model"] == "alice/tiny-bert" and item["validation"] in ("passed", "pending")
        assert body["facets"]["method"][0]["value"] == "seq_bn"
        r = c.get("/api/adapters/resolve", params={"identifier": "@alice/idx-seqbn", "config": "seq_bn"})
        assert r.status_code == 200 and r.json()["commit"] == oid, r.text
        r = c.get("/api/adapters/resolve", params={"identifier": "sentiment/sst-2@ukp"})
        assert r.status_code == 409 and r.json()["candidates"], r.text
        r = c.get("/api/adapters/resolve", params={"identifier": "nothing/here"})
        assert r.status_code == 404 and "no adapter" in r.json()["error"]
        assert c.get("/api/adapters", params={"source": "legacy"}).json()["total"] == 291
        assert c.get("/api/adapters", params={"sort": "bogus"}).status_code == 400
        t = c.get("/api/taxonomy").json()
        assert len(t["tasks"]) == 123
        # a PEFT adapter whose config names no model type gets it from its base model's repository here
        upload_adapter(live_hub, "alice/idx-peft", INTEROP / "bert/peft/lora_qv-seqcls", task="nli")
        hit = c.get("/api/adapters", params={"author": "alice", "library": "peft"}).json()["items"]
        assert [(i["id"], i["model_type"], i["method"]) for i in hit] == [("alice/idx-peft", "bert", "lora")]
        page = c.get("/adapters/alice/idx-peft").text  # its page offers PEFT, not the adapters library
        assert "PeftModel.from_pretrained(base" in page and "adapters.init(model)" not in page
        info = c.get("/api/models/alice/idx-seqbn").json()  # the index's view is part of the model info
        assert (
            info["adapterhub"]["method"] == "seq_bn"
            and info["adapterhub"]["config_hash"] == "9076f36a74755ac4"
        )
        assert info["adapterhub"]["task"] == "sentiment" and info["adapterhub"]["head"] == "classification"
        # downloads and privacy changes reach the index (database triggers), without a new commit
        hf = pytest.importorskip("huggingface_hub")
        hf.hf_hub_download(
            "alice/idx-seqbn",
            "adapter_config.json",
            endpoint=live_hub.url,
            token=False,
            cache_dir=str(live_hub.data_dir / "dl-cache"),
        )
        live_hub.hub.downloads.flush()  # counts are written at most every second
        r = c.get("/api/adapters", params={"author": "alice", "sort": "downloads"}).json()
        assert r["items"][0]["id"] == "alice/idx-seqbn" and r["items"][0]["downloads"] == 1
        api.update_repo_settings("alice/idx-seqbn", private=True)
        ids_anon = [i["id"] for i in c.get("/api/adapters", params={"author": "alice"}).json()["items"]]
        assert "alice/idx-seqbn" not in ids_anon
        auth = {"Authorization": f"Bearer {live_hub.tokens['alice']}"}
        ids_alice = [
            i["id"] for i in c.get("/api/adapters", params={"author": "alice"}, headers=auth).json()["items"]
        ]
        assert "alice/idx-seqbn" in ids_alice
        api.update_repo_settings("alice/idx-seqbn", private=False)
        schema = c.get("/openapi.json").json()
        assert {"/api/adapters", "/api/adapters/resolve", "/api/taxonomy"} <= set(schema["paths"])
        assert "409" in schema["paths"]["/api/adapters/resolve"]["get"]["responses"]
