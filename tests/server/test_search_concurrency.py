"""PostgreSQL: the stored facet counts (``index_facet_counts``, kept by statement triggers: migration 0005) stay
exact while several threads index, change, hide and delete entries at once, and no deadlock or serialization
failure reaches the writer (the index writes take one lock first, migration 0008; :meth:`Database.write` runs a
transaction that deadlocks anyway again)."""

from __future__ import annotations

import random
import threading
from collections import Counter

import pytest
from sqlalchemy import delete, func, insert, select, text, update

from adapterhub.server.index_models import FACET_COLUMNS, IndexEntry
from adapterhub.server.models import Account, Repo

try:
    from test_index import IndexTestDatabase
except ImportError:  # tests/ as a package
    from tests.server.test_index import IndexTestDatabase

pytestmark = pytest.mark.postgres

VALUES = {
    "base_model": ["bert-base-uncased", "roberta-base", None],
    "task": ["sentiment", "nli"],
    "language": ["en", "de", None],
    "method": ["seq_bn", "lora"],
    "head_type": ["classification", None],
}
THREADS, ROUNDS = 6, 25


@pytest.fixture
def pg(tmp_path):
    d = IndexTestDatabase("postgres", tmp_path)
    yield d
    d.drop()


def expected_counts(pg) -> Counter:
    """The counts ``index_facet_counts`` must hold, computed in Python from the public adapters."""
    want: Counter = Counter()
    with pg.session() as s:
        for e in s.scalars(
            select(IndexEntry).where(IndexEntry.is_adapter.is_(True), IndexEntry.private.is_(False))
        ):
            values = [(c, getattr(e, c)) for c in FACET_COLUMNS if getattr(e, c) is not None]
            want[("", "", "", "")] += 1
            for f, v in values:
                want[("", "", f, v)] += 1
                for f2, v2 in values:
                    if f2 != f:
                        want[(f2, v2, f, v)] += 1
    return want


def stored_counts(pg) -> Counter:
    with pg.session() as s:
        rows = s.execute(text("SELECT facet2, value2, facet, value, n FROM index_facet_counts WHERE n <> 0"))
        return Counter({(f2, v2, f, v): n for f2, v2, f, v, n in rows})


def writer(pg, account_id: int, seed: int, errors: list) -> None:
    """ROUNDS transactions of two to four writes each (inserts of new entries with their repositories, facet
    changes, privacy changes through the repository, deletions of entries and of repositories), on entries that
    the other threads write too."""
    rng = random.Random(seed)

    def one(s) -> None:
        for _ in range(rng.randint(2, 4)):
            ids = list(s.scalars(select(IndexEntry.id)))
            pick = rng.sample(ids, min(len(ids), rng.randint(1, 3)))
            kind = rng.choice(["insert"] * 3 + ["update", "update", "private", "delete", "delete_repo"])
            if kind == "insert" or not pick:
                rows = []
                for _ in range(rng.randint(1, 3)):
                    name = f"r{seed}-{rng.getrandbits(48):x}"
                    repo = Repo(namespace="lab", name=name, owner_id=account_id, private=False)
                    s.add(repo)
                    s.flush()
                    row = {c: rng.choice(v) for c, v in VALUES.items()}
                    row.update(
                        repo_pk=repo.id,
                        full_name=f"lab/{name}",
                        name=name,
                        namespace="lab",
                        author="lab",
                        is_adapter=True,
                        search_text=name,
                    )
                    rows.append(row)
                s.execute(insert(IndexEntry), rows)
            elif kind == "update":
                col = rng.choice(list(VALUES))
                s.execute(
                    update(IndexEntry).where(IndexEntry.id.in_(pick)).values({col: rng.choice(VALUES[col])})
                )
            elif kind == "private":
                for pk in s.scalars(select(IndexEntry.repo_pk).where(IndexEntry.id.in_(pick))):
                    if pk is not None:
                        s.execute(update(Repo).where(Repo.id == pk).values(private=rng.random() < 0.5))
            elif kind == "delete_repo":
                repos = [r for r in s.scalars(select(IndexEntry.repo_pk).where(IndexEntry.id.in_(pick))) if r]
                s.execute(delete(Repo).where(Repo.id.in_(repos)))
            else:
                s.execute(delete(IndexEntry).where(IndexEntry.id.in_(pick)))

    try:
        for _ in range(ROUNDS):
            pg.db.write(one)
    except Exception as e:  # noqa: BLE001 - what reached the writer is the test's failure
        errors.append(e)


def test_stored_counts_stay_exact_under_concurrent_writers(pg):
    with pg.session() as s:
        lab = Account(name="lab", kind="org")
        s.add(lab)
        s.flush()
        lab_id = lab.id
    errors: list = []
    threads = [threading.Thread(target=writer, args=(pg, lab_id, i, errors)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    with pg.session() as s:
        assert s.scalar(select(func.count()).select_from(IndexEntry)) > 0
    want = expected_counts(pg)
    assert want[("", "", "", "")] > 0
    assert stored_counts(pg) == want


def test_write_runs_a_deadlocked_transaction_again(pg):
    """Two transactions that lock two rows in opposite orders deadlock; PostgreSQL aborts one of them, and
    ``Database.write`` runs it again, so both complete."""
    with pg.session() as s:
        s.add_all([Account(name="a", fullname="0"), Account(name="b", fullname="0")])
    both = threading.Barrier(2, timeout=30)
    runs: Counter = Counter()

    def swap(first: str, second: str):
        def fn(s) -> None:
            runs[first] += 1
            s.execute(update(Account).where(Account.name == first).values(fullname=Account.fullname + "1"))
            if runs[first] == 1:
                both.wait()  # both hold their first row now
            s.execute(update(Account).where(Account.name == second).values(fullname=Account.fullname + "1"))

        return lambda: pg.db.write(fn)

    errors: list = []

    def run(f) -> None:
        try:
            f()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run, args=(swap(*order),)) for order in (("a", "b"), ("b", "a"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(runs.values()) == [1, 2]  # one of the two was aborted and ran again
    with pg.session() as s:
        assert set(s.scalars(select(Account.fullname))) == {"011"}  # each row changed twice, once per writer
