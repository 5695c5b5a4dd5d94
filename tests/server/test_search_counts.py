"""Search totals and facet counts are exact: compared with a brute-force count in Python over random filters,
full text and viewers (anonymous, owners of private entries, an organisation member, an admin), while entries
are inserted, changed, made private or public (through the repository, as the hub does) and deleted between
the searches, on SQLite and on PostgreSQL (where most counts come from the trigger-maintained
``index_facet_counts``)."""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, event, insert, select, update

from adapterhub.server.index_models import IndexEntry
from adapterhub.server.models import Account, Repo
from adapterhub.server import search_facets, search_query
from adapterhub.server.search_facets import STORED
from adapterhub.server.search_query import FACETS, SearchQuery, Viewer, has_table
from adapterhub.server.search_service import search

try:
    from test_index import IndexTestDatabase
except ImportError:  # tests/ as a package
    from tests.server.test_index import IndexTestDatabase

VALUES = {  # few values per facet (under FACET_LIMIT), None for some
    "base_model": ["bert-base-uncased", "roberta-base", "gpt2", None],
    "model_type": ["bert", "roberta", None],
    "task": ["sentiment", "nli", "qa"],
    "subtask": ["sst-2", "rte", "squad", None],
    "language": ["en", "de", "ar", None],
    "method": ["seq_bn", "lora", "ia3"],
    "head_type": ["classification", "tagging", None],
    "license": ["mit", "apache-2.0", None],
    "library": ["adapters", "peft"],
    "source": ["hub", "legacy"],
}
WORDS = ["movie", "review", "german", "entail", "answer", "bottle"]
ACCOUNTS = ["alice", "bob", "lab"]  # lab: an organisation whose member is bob


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request, tmp_path):
    d = IndexTestDatabase(request.param, tmp_path)
    yield d
    d.drop()


class World:
    """The database's entries as Python dicts, written through SQL the way the hub writes them."""

    def __init__(self, db, rng: random.Random):
        self.db, self.rng, self.n = db, rng, 0
        with db.session() as s:
            self.accounts = {}
            for name in ACCOUNTS:
                a = Account(name=name, kind="org" if name == "lab" else "user")
                s.add(a)
                s.flush()
                self.accounts[name] = a.id

    def new_row(self, s) -> None:
        rng, self.n = self.rng, self.n + 1
        owner = rng.choice(ACCOUNTS + [None])
        private = owner is not None and rng.random() < 0.35
        repo_pk = None
        if owner is not None:
            repo = Repo(namespace=owner, name=f"r{self.n}", owner_id=self.accounts[owner], private=private)
            s.add(repo)
            s.flush()
            repo_pk = repo.id
        row = {c: rng.choice(v) for c, v in VALUES.items()}
        row.update(
            full_name=f"{owner or 'legacy'}/r{self.n}",
            name=f"r{self.n}",
            namespace=owner or "legacy",
            author=owner or rng.choice(["ukp", None]),
            repo_pk=repo_pk,
            private=private,
            is_adapter=rng.random() < 0.9,
            search_text=" ".join(rng.sample(WORDS, 2)) + f" r{self.n}",
            score=rng.choice([None, 0.5, 0.7, 0.9]),
            downloads=rng.choice([0, 3, 10]),
            updated_at=dt.datetime(2026, 1, 1) + dt.timedelta(minutes=self.n),
        )
        s.execute(insert(IndexEntry), [row])

    def mutate(self, s) -> None:
        """One random write: new entries (bulk), changed facets, privacy changed through the repository (the
        sync trigger copies it), or deletions (of entries, or of repositories and with them their entries)."""
        rng = self.rng
        kind = rng.choice(["insert", "update", "private", "delete", "delete_repo", "adapter"])
        ids = list(s.scalars(select(IndexEntry.id)))
        pick = rng.sample(ids, min(len(ids), rng.randint(1, 4)))
        if kind == "insert" or not ids:
            for _ in range(rng.randint(1, 5)):
                self.new_row(s)
        elif kind == "update":
            col = rng.choice(list(VALUES))
            s.execute(
                update(IndexEntry).where(IndexEntry.id.in_(pick)).values({col: rng.choice(VALUES[col])})
            )
        elif kind == "private":
            repos = list(s.scalars(select(IndexEntry.repo_pk).where(IndexEntry.id.in_(pick))))
            for pk in (r for r in repos if r is not None):
                s.execute(update(Repo).where(Repo.id == pk).values(private=rng.random() < 0.5))
        elif kind == "delete_repo":  # the entry goes by the foreign key's ON DELETE CASCADE
            repos = [r for r in s.scalars(select(IndexEntry.repo_pk).where(IndexEntry.id.in_(pick))) if r]
            s.execute(delete(Repo).where(Repo.id.in_(repos)))
        elif kind == "adapter":
            s.execute(update(IndexEntry).where(IndexEntry.id.in_(pick)).values(is_adapter=rng.random() < 0.5))
        else:
            s.execute(delete(IndexEntry).where(IndexEntry.id.in_(pick)))

    def rows(self, s) -> list[dict]:
        owners = dict(s.execute(select(Repo.id, Repo.owner_id)).all())
        out = []
        for e in s.scalars(select(IndexEntry)):
            row = {c: getattr(e, c) for c in VALUES}
            row.update(
                author=e.author,
                private=e.private,
                is_adapter=e.is_adapter,
                text=e.search_text,
                owner=owners.get(e.repo_pk),
                id=e.id,
                score=e.score,
                downloads=e.downloads,
                updated_at=e.updated_at,
                full_name=e.full_name,
            )
            out.append(row)
        return out


SORT_KEYS = {  # the documented orders; ties broken by the newest id
    "score": lambda r: (r["score"] is None, -(r["score"] or 0), -r["id"]),
    "downloads": lambda r: (-r["downloads"], -r["updated_at"].timestamp(), -r["id"]),
    "recent": lambda r: (-r["updated_at"].timestamp(), -r["id"]),
    "name": lambda r: r["full_name"],
}


def in_order(rows: list[dict], query: SearchQuery, viewer: Viewer) -> list[int]:
    """The ids of the hits in the order of ``query.sort`` (score: highest first, no score last, then newest id)."""
    words = query.q.lower().split()
    hits = [
        r
        for r in rows
        if r["is_adapter"]
        and (viewer.admin or not r["private"] or r["owner"] in viewer.account_ids)
        and all(w in r["text"] for w in words)
        and all(r[FACETS[k].key] == v for k, v in query.filters.items())
    ]
    return [r["id"] for r in sorted(hits, key=SORT_KEYS[query.sort])]


def brute_force(
    rows: list[dict], query: SearchQuery, viewer: Viewer
) -> tuple[int, dict[str, dict[str, int]]]:
    def seen(r):
        return r["is_adapter"] and (viewer.admin or not r["private"] or r["owner"] in viewer.account_ids)

    words = query.q.lower().split()
    hits = [r for r in rows if seen(r) and all(w in r["text"] for w in words)]

    def match(r, skip=None):
        return all(r[FACETS[k].key] == v for k, v in query.filters.items() if k != skip)

    facets = {}
    for name, col in FACETS.items():
        counter = Counter(r[col.key] for r in hits if match(r, name) and r[col.key] is not None)
        facets[name] = dict(counter)
    return sum(1 for r in hits if match(r)), facets


def test_totals_and_facet_counts_are_exact_under_random_writes(db, monkeypatch):
    monkeypatch.setattr(search_facets, "FACET_CACHE_SECONDS", 0.0)  # every search counts
    world = World(db, random.Random(7))
    with db.session() as s:
        for _ in range(60):
            world.new_row(s)
    if db.kind == "postgres":
        with db.session() as s:
            assert has_table(s, STORED)  # the stored counts are what this test checks there
    a, b, lab = (world.accounts[n] for n in ACCOUNTS)
    viewers = [Viewer(), Viewer(account_ids=(a,)), Viewer(account_ids=(b, lab)), Viewer(admin=True)]
    filter_values = {name: [v for v in VALUES.get(col.key, []) if v] for name, col in FACETS.items()}
    filter_values["author"] = ACCOUNTS + ["ukp"]

    @settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.data())
    def check(data):
        if data.draw(st.booleans()):
            with db.session() as s:
                world.mutate(s)
        names = data.draw(st.lists(st.sampled_from(list(FACETS)), max_size=3, unique=True))
        filters = {n: data.draw(st.sampled_from(filter_values[n])) for n in names}
        q = " ".join(data.draw(st.lists(st.sampled_from(WORDS), max_size=2)))
        viewer = data.draw(st.sampled_from(viewers))
        per_page, page = data.draw(st.sampled_from([(100, 1), (7, 1), (7, 2), (7, 4)]))
        sort = data.draw(st.sampled_from(list(SORT_KEYS)))
        with_facets = data.draw(st.booleans())
        query = SearchQuery(q=q, filters=filters, per_page=per_page, page=page, sort=sort, facets=with_facets)
        with db.session() as s:
            res = search(s, query, viewer)
            rows = world.rows(s)
            total, facets = brute_force(rows, query, viewer)
        assert res.total == total
        assert [e.id for e in res.items] == in_order(rows, query, viewer)[(page - 1) * per_page :][:per_page]
        assert {k: dict(v) for k, v in res.facets.items()} == (facets if with_facets else {})

    check()


def test_full_text_under_many_filters_is_exact(db, monkeypatch):
    """Full text under every facet's filter, every facet's but one, and one filter (the shapes of the full-text
    statement: no facet without a filter, one, several), on every sort and a later page."""
    monkeypatch.setattr(search_facets, "FACET_CACHE_SECONDS", 0.0)
    world = World(db, random.Random(11))
    with db.session() as s:
        for _ in range(80):
            world.new_row(s)
        rows = world.rows(s)
    viewer = Viewer(admin=True)
    full = [r for r in rows if r["is_adapter"] and "movie" in r["text"]]
    hit = next(r for r in full if all(r[col.key] is not None for col in FACETS.values()))
    every = {name: hit[col.key] for name, col in FACETS.items()}
    shapes = [every, {k: v for k, v in every.items() if k != "language"}, {"language": hit["language"]}]
    for filters in shapes:
        for sort in SORT_KEYS:
            for per_page, page in ((100, 1), (3, 2)):
                query = SearchQuery(q="movie", filters=filters, sort=sort, per_page=per_page, page=page)
                with db.session() as s:
                    res = search(s, query, viewer)
                total, facets = brute_force(rows, query, viewer)
                assert total >= 1 and res.total == total, (filters, sort)
                ids = in_order(rows, query, viewer)[(page - 1) * per_page :][:per_page]
                assert [e.id for e in res.items] == ids
                assert {k: dict(v) for k, v in res.facets.items()} == facets


def searches(db, world) -> None:
    """A few searches of each shape, compared with the brute-force count."""
    a, b, lab = (world.accounts[n] for n in ACCOUNTS)
    for viewer in (Viewer(), Viewer(account_ids=(a,)), Viewer(account_ids=(b, lab)), Viewer(admin=True)):
        for query in (
            SearchQuery(),
            SearchQuery(filters={"task": "nli"}),
            SearchQuery(filters={"language": "de", "method": "lora"}),
            SearchQuery(q="movie", filters={"author": "alice"}),
        ):
            with db.session() as s:
                res = search(s, query, viewer)
                total, facets = brute_force(world.rows(s), query, viewer)
            assert (res.total, {k: dict(v) for k, v in res.facets.items()}) == (total, facets), (
                query,
                viewer,
            )


def test_upgrading_a_database_in_place_counts_its_existing_entries(db, monkeypatch):
    """A database made before the stored counts (revision 0004) with entries in it is upgraded by the server's
    migration run: afterwards the counts include the old entries and follow new writes."""
    from alembic import command
    from alembic.script import ScriptDirectory
    from sqlalchemy import text

    from adapterhub.server import migrate

    monkeypatch.setattr(search_facets, "FACET_CACHE_SECONDS", 0.0)
    with db.engine.connect() as conn:
        cfg = migrate.alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0004_validation_queue")
        conn.commit()
    search_query._TABLES.clear()  # the process cache of which tables exist
    with db.session() as s:
        assert not has_table(s, STORED)
    world = World(db, random.Random(3))
    with db.session() as s:
        for _ in range(40):
            world.new_row(s)
    migrate.upgrade(db.engine)
    search_query._TABLES.clear()  # the process cache of which tables exist
    with db.session() as s:
        assert has_table(s, STORED) == (db.kind == "postgres")
        head = ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()
        assert s.scalar(text("SELECT version_num FROM alembic_version")) == head
    searches(db, world)
    with db.session() as s:
        for _ in range(5):
            world.mutate(s)
    searches(db, world)


LONG = "".join(
    random.Random(5).choice("abcdef0123456789") for _ in range(4000)
)  # 4,000 characters, no separator


def test_word_index_matches_like_substrings(db, monkeypatch):
    """PostgreSQL looks plain query words up through the word index (migration 0009): a word that occurs inside
    longer words, words added by later writes, and the LIKE path it falls back to all give the brute-force answer."""
    monkeypatch.setattr(search_facets, "FACET_CACHE_SECONDS", 0.0)
    world = World(db, random.Random(11))
    with db.session() as s:
        for _ in range(40):
            world.new_row(s)
        s.execute(
            update(IndexEntry).where(IndexEntry.id % 3 == 0).values(search_text="reviewers-german sub_word")
        )
        # runs of a-z0-9 longer than an index key may be (about 2.7 kB): indexed in pieces (migration 0010)
        s.execute(update(IndexEntry).where(IndexEntry.id % 7 == 1).values(search_text=f"movie {LONG} x"))
    viewer = Viewer(admin=True)
    with db.session() as s:
        rows = world.rows(s)
    assert all(brute_force(rows, SearchQuery(q=q), viewer)[0] for q in ("ovi", "german ovi", "reviewers"))
    deep = [
        LONG[2950:3050],
        LONG[:100],
        LONG[-100:],
        LONG[1234:1335],
        LONG[10:130],
    ]  # the last two: LIKE
    assert all(brute_force(rows, SearchQuery(q=q), viewer)[0] for q in deep + [f"movie {LONG}"])
    queries = [
        "ovi",
        "view",
        "german ovi",
        "reviewers",
        "sub_word",
        "ub_w",
        "zzz",
        "r1",
        f"movie {LONG}",
        *deep,
    ]
    for q in queries:
        with db.session() as s:
            if db.kind == "postgres":
                used = search_query.word_condition(s, q.split()[0], "w") is not None
                assert used == (
                    q.split()[0] in ("ovi", "view", "german", "reviewers", "zzz", "movie", *deep[:3])
                )
            res = search(s, SearchQuery(q=q, per_page=100), viewer)
            total, facets = brute_force(world.rows(s), SearchQuery(q=q), viewer)
        assert res.total == total and {k: dict(v) for k, v in res.facets.items()} == facets, q
    monkeypatch.setattr(search_query, "WORDS_MAX", 0)  # every word through LIKE: the same answers
    for q in queries:
        with db.session() as s:
            assert search_query.word_condition(s, "movie", "w") is None
            assert (
                search(s, SearchQuery(q=q), viewer).total
                == brute_force(world.rows(s), SearchQuery(q=q), viewer)[0]
            )


def test_cached_facets_leave_a_full_text_search_exact(db, monkeypatch):
    """With the facet cache on, a repeated full-text search takes its facets from the cache (on PostgreSQL its
    statement then reads only the hits' number and page: no GROUPING SETS) and still gives the exact total and
    page; a new entry makes the cached counts stale, so the next search counts them again."""
    monkeypatch.setattr(search_facets, "FACET_CACHE_SECONDS", 30.0)
    world = World(db, random.Random(5))
    with db.session() as s:
        for _ in range(40):
            world.new_row(s)
    statements: list[str] = []
    event.listen(db.db.engine, "before_cursor_execute", lambda c, cur, st, *a: statements.append(st))
    viewer = Viewer(admin=True)
    for filters in ({}, {"task": "sentiment"}):
        query = SearchQuery(q="movie", filters=filters, per_page=5)
        runs = []
        for write in (False, False, True, False):
            if write:
                with db.session() as s:
                    world.new_row(s)
                continue
            statements.clear()
            with db.session() as s:
                res = search(s, query, viewer)
                rows = world.rows(s)
            total, facets = brute_force(rows, query, viewer)
            assert res.total == total
            assert [e.id for e in res.items] == in_order(rows, query, viewer)[:5]
            assert {k: dict(v) for k, v in res.facets.items()} == facets
            runs.append(any("GROUPING SETS" in st for st in statements))
        if db.kind == "postgres":  # counted, from the cache, counted again after the write
            assert runs == [True, False, True]
