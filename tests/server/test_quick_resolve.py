"""``resolve.quick_resolve`` (one plain SQL query, used by the bundle and resolve APIs for a public ``org/name``)
gives exactly what ``resolve.resolve`` gives, and declines (None) every case it does not cover, on SQLite and
PostgreSQL."""

from __future__ import annotations

import pytest

from adapterhub.server.resolve import ResolveError, quick_resolve, resolve
from adapterhub.server.search_query import Viewer

try:
    from test_search import INTEROP, upload_adapter
except ImportError:  # tests/ as a package
    from tests.server.test_search import INTEROP, upload_adapter

pytestmark = pytest.mark.skipif(not INTEROP.is_dir(), reason="../shared/fixtures/interop is missing")

SEQ = INTEROP / "bert/adapters/seq_bn-seqcls/safetensors"
DOUBLE = INTEROP / "bert/adapters/double_seq_bn/safetensors"


@pytest.fixture(scope="module")
def repos(live_hub):
    upload_adapter(live_hub, "alice/qr-seq", SEQ, task="sentiment", subtask="qr-test")
    upload_adapter(live_hub, "acme/qr-double", DOUBLE, task="sentiment", subtask="qr-test")
    # a repository whose id is also a task/subtask pair of another adapter: resolve answers 409
    upload_adapter(live_hub, "acme/qr-clash", SEQ, task="qa", subtask="x")
    upload_adapter(live_hub, "alice/qr-clash", SEQ, task="acme", subtask="qr-clash")
    live_hub.api("alice").create_repo("alice/qr-private", private=True)
    upload_adapter(live_hub, "alice/qr-private", SEQ, task="nli", subtask="qr-private")
    return live_hub


def answer(s, identifier, model_name=None):
    try:
        return resolve(s, identifier, model_name=model_name, viewer=Viewer()).model_dump(mode="json")
    except ResolveError as e:
        return ("error", e.status)


def test_quick_resolve_answers_like_resolve_or_declines(repos):
    covered = ["alice/qr-seq", "acme/qr-double", " alice/qr-seq "]
    declined = [
        "alice/qr-private",  # private: the full path checks the caller
        "acme/qr-clash",  # also a task/subtask pair: 409 from resolve
        "alice/qr-seq@main",
        "sentiment/qr-test",
        "sentiment/qr-test@alice",
        "@alice/qr-seq",
        "qr-test@alice",
        "alice/nope",
        "alice/tiny-bert",  # a base model, no adapter
        "a/b/c",
        "",
    ]
    with repos.hub.db.session() as s:
        for identifier in covered:
            quick = quick_resolve(s, identifier)
            assert quick is not None, identifier
            assert quick == answer(s, identifier), identifier
            assert quick["commit"] and quick["version"] == "main" and quick["config_hash"]
        for identifier in declined:
            assert quick_resolve(s, identifier) is None, identifier
        assert answer(s, "acme/qr-clash") == ("error", 409)
        with repos.hub.db.engine.connect() as conn:  # a plain connection works too (the bundle's fast path)
            assert quick_resolve(conn, "alice/qr-seq") == answer(s, "alice/qr-seq")
        if repos.hub.db.engine.dialect.name == "sqlite":  # and SQLite's own DBAPI connection (its fast path)
            raw = repos.hub.db.engine.raw_connection()
            try:
                for identifier in covered:
                    assert quick_resolve(raw, identifier) == answer(s, identifier), identifier
                for identifier in declined:
                    assert quick_resolve(raw, identifier) is None, identifier
            finally:
                raw.close()


def test_quick_resolve_with_the_model_name(repos):
    """A client loading into a model passes its name: the quick path answers when it is the adapter's base model
    and leaves resolve's explanation to it otherwise."""
    with repos.hub.db.session() as s:
        base = answer(s, "alice/qr-seq")["base_model"]
        assert base
        quick = quick_resolve(s, "alice/qr-seq", model_name=base)
        assert quick is not None and quick == answer(s, "alice/qr-seq", model_name=base)
        assert quick_resolve(s, "alice/qr-seq", model_name="other/model") is None
        assert answer(s, "alice/qr-seq", model_name="other/model") == ("error", 404)


def test_quick_resolve_follows_a_new_commit_and_privacy(repos):
    with repos.hub.db.session() as s:
        before = quick_resolve(s, "alice/qr-seq")["commit"]
    _, commit = upload_adapter(repos, "alice/qr-seq", DOUBLE, task="sentiment", subtask="qr-test")
    with repos.hub.db.session() as s:
        now = quick_resolve(s, "alice/qr-seq")
        assert now["commit"] == commit != before and now == answer(s, "alice/qr-seq")
    repos.api("alice").update_repo_settings("alice/qr-seq", private=True)
    try:
        with repos.hub.db.session() as s:
            assert quick_resolve(s, "alice/qr-seq") is None
            assert answer(s, "alice/qr-seq")[0] == "error"
    finally:
        repos.api("alice").update_repo_settings("alice/qr-seq", private=False)
