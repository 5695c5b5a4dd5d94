"""Hub search latency with many indexed adapters.

Inserts N synthetic index rows in bulk (plus the real taxonomy when ../shared is present) into a fresh
database, then times typical search API calls (facets on, 20 per page) and resolve calls, each repeated,
and prints p50 / p95 per query and over all queries: "cold" computes every facet count in the database,
"warm" lets repeated identical queries take their facet counts from the server's short-lived facet cache
(items and totals are always computed).

    .venv/bin/python benchmarks/hub_search.py                         # SQLite, 100,000 rows
    .venv/bin/python benchmarks/hub_search.py --database-url postgresql+psycopg2://user:pw@127.0.0.1/db
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, insert, text

from adapterhub.server import migrate
from adapterhub.server.db import Database
from adapterhub.server.index_models import IndexEntry
from adapterhub.server.resolve import resolve
from adapterhub.server.search_query import SearchQuery, Viewer
from adapterhub.server.search_service import search

WORDS = (
    "adapter trained on the dataset with early stopping learning rate epochs classification sentiment "
    "reviews movie news questions answers entailment paraphrase multilingual wikipedia masked language "
    "modelling bottleneck low rank prefix prompt tuning efficient transfer frozen backbone"
).split()
TASKS = {
    "sentiment": ["sst-2", "imdb", "rotten_tomatoes", "yelp"],
    "nli": ["multinli", "rte", "qnli", "snli"],
    "qa": ["squad1", "squad2", "boolq"],
    "sts": ["mrpc", "qqp", "sts-b"],
    "ner": ["conll2003", "wikiann"],
    "pos": ["ud_ewt", "conll2003"],
    "lingaccept": ["cola"],
    "comsense": ["hellaswag", "winogrande", "siqa"],
    "topic": ["ag_news", "trec"],
    "summarization": ["xsum", "cnn_dailymail"],
}
LANGS = ["en"] * 30 + "de fr es zh ja ar ru hi sw fi et tr ko it pt nl pl cs el he id vi th ta".split()
METHODS = (
    ["seq_bn"] * 6
    + ["lora"] * 6
    + ["double_seq_bn", "par_bn", "compacter", "ia3", "prefix_tuning", "prompt_tuning", "dora", "reft"]
)
HEADS = [None, None, "classification", "tagging", "question_answering", "causal_lm", "multiple_choice"]
LICENSES = [None, "apache-2.0", "mit", "cc-by-4.0", "cc-by-sa-4.0", "bsd-3-clause", "openrail"]
BASES = [
    ("bert-base-uncased", "bert"),
    ("bert-base-cased", "bert"),
    ("bert-base-multilingual-cased", "bert"),
    ("roberta-base", "roberta"),
    ("roberta-large", "roberta"),
    ("xlm-roberta-base", "xlm-roberta"),
    ("xlm-roberta-large", "xlm-roberta"),
    ("distilbert-base-uncased", "distilbert"),
    ("gpt2", "gpt2"),
    ("facebook/bart-base", "bart"),
    ("t5-base", "t5"),
    ("meta-llama/Llama-3.2-1B", "llama"),
    ("HuggingFaceTB/SmolLM2-135M", "llama"),
    ("Qwen/Qwen2.5-0.5B", "qwen2"),
    ("microsoft/deberta-v3-base", "deberta-v2"),
]
BASES += [(f"org{i}/custom-model-{i}", "bert") for i in range(35)]


def synthetic_rows(n: int, seed: int = 0):
    rng = random.Random(seed)
    authors = [f"user{i}" for i in range(2000)]
    t0 = dt.datetime(2024, 1, 1)
    task_names = list(TASKS)
    for i in range(n):
        task = rng.choice(task_names)
        subtask = rng.choice(TASKS[task])
        base, mtype = BASES[min(int(rng.expovariate(0.15)), len(BASES) - 1)]
        method, lang = rng.choice(METHODS), rng.choice(LANGS)
        author = authors[min(int(rng.expovariate(0.003)), len(authors) - 1)]
        name = f"{base.split('/')[-1]}-{task}-{subtask}-{method}-{i}"
        desc = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30)))
        row = dict(
            full_name=f"{author}/{name}",
            namespace=author,
            name=name,
            author=author,
            source="hub",
            downloadable=True,
            private=rng.random() < 0.02,
            is_adapter=True,
            commit_oid=uuid.uuid4().hex[:40],
            revision="main",
            library="peft"
            if method in ("lora", "ia3", "prefix_tuning", "dora") and rng.random() < 0.5
            else "adapters",
            method=method,
            method_family=None,
            config_hash=f"{rng.getrandbits(64):016x}",
            base_model=base,
            model_type=mtype,
            head_type=rng.choice(HEADS),
            task=task,
            subtask=subtask,
            language=lang,
            license=rng.choice(LICENSES),
            description=desc,
            size_bytes=rng.randint(10_000, 50_000_000),
            num_params=rng.randint(1_000, 10_000_000),
            downloads=int(rng.paretovariate(1.2)) - 1,
            score=round(rng.uniform(50, 95), 2) if rng.random() < 0.4 else None,
            validation_status="passed",
            data={},
            created_at=t0,
            updated_at=t0 + dt.timedelta(minutes=i * 3 + rng.randint(0, 2)),
        )
        row["search_text"] = " ".join(
            str(v)
            for v in (
                row["full_name"],
                desc,
                base,
                mtype,
                method,
                task,
                subtask,
                lang,
                row["license"],
                row["head_type"],
            )
            if v
        ).lower()
        yield row


QUERIES = {
    "browse (no filter, recent)": SearchQuery(),
    "task=sentiment": SearchQuery(filters={"task": "sentiment"}),
    "task+subtask+language": SearchQuery(filters={"task": "nli", "subtask": "rte", "language": "de"}),
    "base_model+method": SearchQuery(filters={"base_model": "bert-base-uncased", "method": "lora"}),
    "text 'sentiment imdb'": SearchQuery(q="sentiment imdb"),
    "text 'multilingual xlm' + head": SearchQuery(q="multilingual xlm", filters={"head": "classification"}),
    "sort=downloads": SearchQuery(sort="downloads"),
    "sort=score, task=qa": SearchQuery(sort="score", filters={"task": "qa"}),
    "page 200": SearchQuery(page=200),
    "logged-in viewer, author": SearchQuery(filters={"author": "user3"}),
}


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    k = (len(values) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def fresh_database(url: str | None, tmp: Path, keep_schema: str = "") -> tuple[Database, callable]:
    if not url:
        return Database(f"sqlite:///{tmp / 'bench.sqlite'}"), lambda: None
    schema = keep_schema or "bench_" + uuid.uuid4().hex[:10]
    admin = create_engine(url)
    with admin.begin() as c:
        c.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    db = Database(url + ("&" if "?" in url else "?") + f"options=-csearch_path%3D{schema}")
    if keep_schema:
        return db, db.dispose

    def drop():
        db.dispose()
        with admin.begin() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return db, drop


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument(
        "--database-url", default="", help="PostgreSQL URL (a throwaway schema is used); SQLite if empty"
    )
    ap.add_argument("--no-facets", action="store_true")
    ap.add_argument("--pg-schema", default="", help="keep the PostgreSQL data in this schema and reuse it")
    ap.add_argument(
        "--sqlite-file",
        default="",
        help="keep the SQLite database in this file and reuse it "
        "when it already holds the rows (faster re-runs)",
    )
    args = ap.parse_args(argv)
    if args.sqlite_file and not args.database_url:
        run(Database(f"sqlite:///{Path(args.sqlite_file).resolve()}"), args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        db, drop = fresh_database(args.database_url, Path(tmp), args.pg_schema)
        try:
            run(db, args)
        finally:
            drop()


#: rows per INSERT / COPY statement (each one transaction; PostgreSQL's counts triggers run once per statement)
BATCH = 50_000


def insert_rows(db: Database, rows: list[dict]) -> None:
    with db.session() as s:
        s.execute(insert(IndexEntry), rows)


def copy_rows(db: Database, rows: list[dict]) -> None:
    """PostgreSQL: ``rows`` in one ``COPY`` (the statement triggers that keep the facet counts see them all)."""
    cols = list(rows[0])
    buf = io.StringIO()
    out = csv.writer(buf)
    for row in rows:
        out.writerow(
            ["\\N" if row[c] is None else json.dumps(row[c]) if c == "data" else row[c] for c in cols]
        )
    buf.seek(0)
    conn = db.engine.raw_connection()
    try:
        with conn.cursor() as cur:
            cur.copy_expert(
                f"COPY index_entries ({', '.join(cols)}) FROM STDIN WITH (FORMAT csv, NULL '\\N')", buf
            )
        conn.commit()
    finally:
        conn.close()


def run(db: Database, args) -> None:
    migrate.upgrade(db.engine)
    t = time.perf_counter()
    batch: list[dict] = []
    with db.session() as s:
        have = s.scalar(text("SELECT count(*) FROM index_entries WHERE source = 'hub'"))
    if have >= args.rows:
        print(f"{db.engine.dialect.name}: reusing {have:,} index rows")
        args.rows = 0
    load = copy_rows if db.engine.dialect.name == "postgresql" else insert_rows
    for row in synthetic_rows(args.rows):
        batch.append(row)
        if len(batch) == BATCH:
            load(db, batch)
            batch = []
    if batch:
        load(db, batch)
    if db.engine.dialect.name == "postgresql":  # what autovacuum does on a live server (index-only scans)
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text("VACUUM ANALYZE index_entries"))
            if c.execute(text("SELECT to_regclass('index_facet_counts')")).scalar():
                c.execute(text("VACUUM ANALYZE index_facet_counts"))
    else:
        with db.engine.begin() as c:
            c.execute(text("ANALYZE"))
    if args.rows:
        print(
            f"{db.engine.dialect.name}: inserted {args.rows:,} index rows in {time.perf_counter() - t:.1f}s"
        )
    try:
        from adapterhub.server.taxonomy import default_data_path, seed

        if default_data_path():
            with db.session() as s:
                seed(s)
            print("plus the legacy AdapterHub index (291 cards)")
    except Exception as e:  # noqa: BLE001
        print(f"(legacy index not imported: {e})")

    import adapterhub.server.search_facets as S

    cold_all: list[float] = []
    warm_all: list[float] = []
    print(
        f"{'query (20 per page, facets on)':34s} {'hits':>7s} {'cold p50':>9s} {'cold p95':>9s} "
        f"{'warm p50':>9s} {'warm p95':>9s}   (ms)"
    )
    for label, q in QUERIES.items():
        q.facets = not args.no_facets
        viewer = Viewer(account_ids=(1, 2)) if label.startswith("logged-in") else None
        row = {}
        for mode, cache_seconds in (("cold", 0.0), ("warm", 30.0)):
            S.FACET_CACHE_SECONDS = cache_seconds  # cold: every facet count computed by the database
            times = []
            for i in range(args.repeat + 2):
                with db.session() as s:
                    t = time.perf_counter()
                    res = search(s, q, viewer)
                    dt_ms = (time.perf_counter() - t) * 1000
                if i >= 2:  # two warm-up runs (database pages; for "warm" also the facet cache)
                    times.append(dt_ms)
            (cold_all if mode == "cold" else warm_all).extend(times)
            row[mode] = times
        print(
            f"{label:34s} {res.total:7d} {statistics.median(row['cold']):9.1f} {pct(row['cold'], 0.95):9.1f} "
            f"{statistics.median(row['warm']):9.1f} {pct(row['warm'], 0.95):9.1f}"
        )
    times = []
    with db.session() as s:
        some = s.execute(text("SELECT full_name FROM index_entries WHERE source='hub' LIMIT 1")).scalar()
    for i in range(args.repeat + 2):
        with db.session() as s:
            t = time.perf_counter()
            resolve(s, f"@{some}")
            try:
                resolve(s, "sentiment/sst-2@user0", model_name="bert-base-uncased", config="seq_bn")
            except Exception:  # noqa: BLE001 - 404/409 are answers too
                pass
            dt_ms = (time.perf_counter() - t) * 1000 / 2
        if i >= 2:
            times.append(dt_ms)
    print(
        f"{'ALL search queries':34s} {'':7s} {statistics.median(cold_all):9.1f} {pct(cold_all, 0.95):9.1f} "
        f"{statistics.median(warm_all):9.1f} {pct(warm_all, 0.95):9.1f}"
    )
    print(
        f"{'resolve (2 forms, per call)':34s} {'':7s} {statistics.median(times):9.1f} {pct(times, 0.95):9.1f}"
    )


if __name__ == "__main__":
    sys.exit(main())
