"""huggingface_hub (the newest version, in process) against a live hub on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest

hf = pytest.importorskip("huggingface_hub")
from huggingface_hub import errors as hf_errors  # noqa: E402


def make_folder(root, n_extra: int = 0):
    """A small repo: a card, a JSON config, a valid safetensors file, a nested file."""
    import torch
    from safetensors.torch import save_file

    root.mkdir(parents=True, exist_ok=True)
    (root / "README.md").write_text("---\nlicense: apache-2.0\ntags: [demo]\n---\n# Demo\n")
    (root / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 32}))
    save_file(
        {"w": torch.arange(3000, dtype=torch.float32).reshape(30, 100)}, str(root / "weights.safetensors")
    )
    (root / "sub").mkdir(exist_ok=True)
    (root / "sub" / "notes.txt").write_bytes(bytes(range(256)) * 10)
    for i in range(n_extra):
        (root / "many").mkdir(exist_ok=True)
        (root / "many" / f"f{i:03d}.txt").write_text(f"file {i}\n")
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_create_upload_download_roundtrip(live_hub, tmp_path):
    api = live_hub.api("alice")
    url = api.create_repo("alice/demo")
    assert str(url).endswith("/alice/demo")
    assert api.create_repo("alice/demo", exist_ok=True).repo_id == "alice/demo"  # 409 carries the url
    with pytest.raises(hf_errors.HfHubHTTPError) as e:
        api.create_repo("alice/demo")
    assert e.value.response.status_code == 409
    files = make_folder(tmp_path / "src")
    info = api.upload_folder(repo_id="alice/demo", folder_path=tmp_path / "src", commit_message="first")
    assert len(info.oid) == 40

    for path, data in files.items():
        got = hf.hf_hub_download(
            "alice/demo", path, endpoint=live_hub.url, cache_dir=tmp_path / "c1", token=False
        )
        assert open(got, "rb").read() == data, path
    snap = hf.snapshot_download("alice/demo", endpoint=live_hub.url, cache_dir=tmp_path / "c2", token=False)
    from pathlib import Path

    got = {p.relative_to(snap).as_posix(): p.read_bytes() for p in Path(snap).rglob("*") if p.is_file()}
    assert got == files

    mi = api.model_info("alice/demo", files_metadata=True)
    assert mi.sha == info.oid
    sizes = {s.rfilename: s.size for s in mi.siblings}
    assert sizes == {p: len(d) for p, d in files.items()}
    st = next(s for s in mi.siblings if s.rfilename == "weights.safetensors")
    assert st.lfs.sha256 == hashlib.sha256(files["weights.safetensors"]).hexdigest()
    assert mi.card_data["license"] == "apache-2.0"
    assert "alice/demo" in [m.id for m in api.list_models(author="alice")]
    assert sorted(api.list_repo_files("alice/demo")) == sorted(files)


def test_tree_recursion_and_pagination(live_hub, tmp_path):
    api = live_hub.api("alice")
    api.create_repo("alice/many")
    files = make_folder(tmp_path / "src", n_extra=120)
    api.upload_folder(repo_id="alice/many", folder_path=tmp_path / "src")
    top = {e.path for e in api.list_repo_tree("alice/many")}
    assert top == {"README.md", "config.json", "weights.safetensors", "sub", "many"}
    # expand=True pages by 50 entries: 124 files + 2 folders need three pages, followed through Link
    deep = list(api.list_repo_tree("alice/many", recursive=True, expand=True))
    assert {e.path for e in deep if isinstance(e, hf.hf_api.RepoFile)} == set(files)
    sub = list(api.list_repo_tree("alice/many", path_in_repo="many"))
    assert len(sub) == 120
    r = httpx.get(f"{live_hub.url}/api/models/alice/many/tree/main?recursive=true&expand=true")
    assert len(r.json()) == 50 and 'rel="next"' in r.headers["link"]


def test_revisions_branches_and_tags(live_hub, tmp_path):
    api = live_hub.api("alice")
    api.create_repo("alice/versions")
    c1 = api.upload_file(path_or_fileobj=b"v1", path_in_repo="x.txt", repo_id="alice/versions").oid
    api.create_tag("alice/versions", tag="v1.0")
    api.create_branch("alice/versions", branch="dev")
    api.upload_file(path_or_fileobj=b"v2", path_in_repo="x.txt", repo_id="alice/versions")
    api.upload_file(path_or_fileobj=b"dev", path_in_repo="x.txt", repo_id="alice/versions", revision="dev")

    def get(rev, cache):
        p = hf.hf_hub_download(
            "alice/versions",
            "x.txt",
            revision=rev,
            endpoint=live_hub.url,
            cache_dir=tmp_path / cache,
            token=False,
        )
        return open(p, "rb").read()

    assert get("main", "a") == b"v2"
    assert get("v1.0", "b") == b"v1"  # a tag pins its commit
    assert get("dev", "c") == b"dev"
    assert get(c1, "d") == b"v1"  # and so does a commit id
    refs = api.list_repo_refs("alice/versions")
    assert {b.name for b in refs.branches} == {"main", "dev"}
    assert [(t.name, t.target_commit) for t in refs.tags] == [("v1.0", c1)]
    snap = hf.snapshot_download(
        "alice/versions", revision="v1.0", endpoint=live_hub.url, cache_dir=tmp_path / "s", token=False
    )
    assert open(f"{snap}/x.txt", "rb").read() == b"v1"
    with pytest.raises(hf_errors.HfHubHTTPError) as e:
        api.create_tag("alice/versions", tag="v1.0")
    assert e.value.response.status_code == 409
    api.delete_tag("alice/versions", tag="v1.0")
    api.delete_branch("alice/versions", branch="dev")
    refs = api.list_repo_refs("alice/versions")
    assert refs.tags == [] and [b.name for b in refs.branches] == ["main"]
    # a branch name with a slash travels percent-encoded (feature%2Fx) in every URL
    api.create_branch("alice/versions", branch="feature/x")
    feat = api.upload_file(
        path_or_fileobj=b"feat", path_in_repo="x.txt", repo_id="alice/versions", revision="feature/x"
    ).oid
    assert get("feature/x", "f") == b"feat"
    assert api.model_info("alice/versions", revision="feature/x").sha == feat
    assert {b.name: b.target_commit for b in api.list_repo_refs("alice/versions").branches}[
        "feature/x"
    ] == feat
    api.delete_branch("alice/versions", branch="feature/x")
    api.upload_file(path_or_fileobj=b"y", path_in_repo="y.txt", repo_id="alice/versions")
    last = {e.path: e.last_commit for e in api.list_repo_tree("alice/versions", expand=True)}
    commits = api.list_repo_commits("alice/versions")
    assert last["y.txt"].oid == commits[0].commit_id and last["x.txt"].oid == commits[1].commit_id
    assert last["x.txt"].title == commits[1].title
    assert commits[-2].commit_id == c1 and len(commits) == 4  # initial commit, v1, v2, y
    with pytest.raises(hf_errors.RevisionNotFoundError):
        get("v1.0", "e")


def test_private_repos_and_write_permissions(live_hub, tmp_path):
    alice = live_hub.api("alice")
    alice.create_repo("alice/secret", private=True)
    alice.upload_file(path_or_fileobj=b"s3cret", path_in_repo="a.txt", repo_id="alice/secret")
    for who in (None, "bob"):
        token = live_hub.tokens[who] if who else False
        with pytest.raises(hf_errors.RepositoryNotFoundError):
            hf.hf_hub_download(
                "alice/secret", "a.txt", endpoint=live_hub.url, cache_dir=tmp_path / str(who), token=token
            )
        with pytest.raises(hf_errors.RepositoryNotFoundError):
            live_hub.api(who).model_info("alice/secret")
        assert "alice/secret" not in [m.id for m in live_hub.api(who).list_models()]
        with pytest.raises(hf_errors.RepositoryNotFoundError):
            live_hub.api(who).auth_check("alice/secret")
    alice.auth_check("alice/secret")
    p = hf.hf_hub_download(
        "alice/secret",
        "a.txt",
        endpoint=live_hub.url,
        cache_dir=tmp_path / "ar",
        token=live_hub.tokens["alice-read"],
    )
    assert open(p, "rb").read() == b"s3cret"
    # writing: bob cannot write to alice's public repo, a read token cannot write, anonymous cannot create
    alice.create_repo("alice/public")
    for who in ("bob", "alice-read"):
        with pytest.raises(hf_errors.HfHubHTTPError) as e:
            live_hub.api(who).upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="alice/public")
        assert e.value.response.status_code == 403
    with pytest.raises(hf_errors.HfHubHTTPError) as e:
        live_hub.api("bob").create_repo("alice/bobs")
    assert e.value.response.status_code == 403
    # an organisation member can write to the organisation's repos
    alice.create_repo("acme/shared")
    alice.upload_file(path_or_fileobj=b"org", path_in_repo="o.txt", repo_id="acme/shared")
    assert live_hub.api(None).model_info("acme/shared").siblings[0].rfilename == "o.txt"
    who = alice.whoami()
    assert who["name"] == "alice" and [o["name"] for o in who["orgs"]] == ["acme"]
    r = httpx.get(f"{live_hub.url}/api/whoami-v2")
    assert r.status_code == 401 and "token" in r.json()["error"]


def test_resolve_headers_errors_and_ranges(live_hub):
    api = live_hub.api("alice")
    api.create_repo("alice/headers")
    data = bytes(range(256)) * 40
    sha = api.upload_file(path_or_fileobj=data, path_in_repo="d/blob.bin.txt", repo_id="alice/headers").oid
    base = f"{live_hub.url}/alice/headers/resolve"
    h = httpx.head(f"{base}/main/d/blob.bin.txt", headers={"Accept-Encoding": "identity"})
    assert h.status_code == 200 and h.headers["content-length"] == str(len(data))
    assert h.headers["x-repo-commit"] == sha and h.headers["x-linked-size"] == str(len(data))
    assert (
        h.headers["etag"].strip('"')
        == hashlib.sha256(data).hexdigest()
        == h.headers["x-linked-etag"].strip('"')
    )
    r = httpx.get(f"{base}/main/d/blob.bin.txt", headers={"Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == data[100:200]
    assert r.headers["content-range"] == f"bytes 100-199/{len(data)}"
    missing = httpx.head(f"{base}/main/nope.txt")
    assert missing.status_code == 404 and missing.headers["x-error-code"] == "EntryNotFound"
    assert missing.headers["x-repo-commit"] == sha
    norev = httpx.get(f"{base}/nobranch/d/blob.bin.txt")
    assert norev.status_code == 404 and norev.headers["x-error-code"] == "RevisionNotFound"
    norepo = httpx.head(f"{live_hub.url}/alice/nothing/resolve/main/x")
    assert norepo.status_code == 404 and norepo.headers["x-error-code"] == "RepoNotFound"
    with pytest.raises(hf_errors.EntryNotFoundError):
        hf.hf_hub_download(
            "alice/headers", "nope.txt", endpoint=live_hub.url, token=False, cache_dir=live_hub.data_dir / "c"
        )


def test_concurrent_commits_to_one_branch_are_all_kept(live_hub):
    """8 clients commit to the same branch at once (no parentCommit): the server serialises and rebases."""
    import concurrent.futures as cf

    api = live_hub.api("alice")
    api.create_repo("alice/busy")

    def push(i):
        return [
            api.upload_file(
                path_or_fileobj=f"{i}-{k}".encode(), path_in_repo=f"c{i}/{k}.txt", repo_id="alice/busy"
            ).oid
            for k in range(3)
        ]

    with cf.ThreadPoolExecutor(8) as pool:
        oids = [o for chunk in pool.map(push, range(8)) for o in chunk]
    assert len(set(oids)) == 24
    assert sorted(api.list_repo_files("alice/busy")) == sorted(
        f"c{i}/{k}.txt" for i in range(8) for k in range(3)
    )
    assert len(api.list_repo_commits("alice/busy")) == 25  # the initial commit and one per upload, in a chain


def test_repo_settings_delete_and_listing(live_hub):
    api = live_hub.api("alice")
    api.create_repo("alice/flip")
    api.upload_file(path_or_fileobj=b"x", path_in_repo="a.txt", repo_id="alice/flip")
    api.update_repo_settings("alice/flip", private=True)
    with pytest.raises(hf_errors.RepositoryNotFoundError):
        live_hub.api(None).model_info("alice/flip")
    api.update_repo_settings("alice/flip", private=False)
    assert live_hub.api(None).model_info("alice/flip").id == "alice/flip"
    found = [m.id for m in live_hub.api(None).list_models(search="FLI", author="alice")]
    assert found == ["alice/flip"]
    with pytest.raises(hf_errors.HfHubHTTPError) as e:
        live_hub.api("bob").delete_repo("alice/flip")
    assert e.value.response.status_code == 403
    api.delete_repo("alice/flip")
    with pytest.raises(hf_errors.RepositoryNotFoundError):
        api.model_info("alice/flip")
    assert not api.repo_exists("alice/flip")


def test_copy_delete_patterns_paths_info_and_local_dir(live_hub, tmp_path):
    api = live_hub.api("alice")
    api.create_repo("alice/ops")
    api.upload_file(path_or_fileobj=b"hello", path_in_repo="a/b.txt", repo_id="alice/ops")
    assert api.file_exists("alice/ops", "a/b.txt") and not api.file_exists("alice/ops", "nope")
    assert api.revision_exists("alice/ops", "main") and not api.revision_exists("alice/ops", "zzz")
    info = {e.path: e for e in api.get_paths_info("alice/ops", ["a/b.txt", "a"])}
    assert info["a/b.txt"].size == 5 and info["a/b.txt"].blob_id == hashlib.sha1(b"blob 5\0hello").hexdigest()
    assert isinstance(info["a"], hf.hf_api.RepoFolder)
    api.create_commit(
        "alice/ops", operations=[hf.CommitOperationCopy("a/b.txt", "c.txt")], commit_message="copy"
    )
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "n.txt").write_text("n")
    api.upload_folder(repo_id="alice/ops", folder_path=tmp_path / "src", delete_patterns=["a/*"])
    assert sorted(api.list_repo_files("alice/ops")) == ["c.txt", "n.txt"]
    for _ in range(2):  # the second time the file is found in place (sha256 etag compared)
        p = hf.hf_hub_download(
            "alice/ops", "c.txt", endpoint=live_hub.url, local_dir=tmp_path / "ld", token=False
        )
        assert open(p, "rb").read() == b"hello"


def test_list_models_pages_follow_link(live_hub):
    api = live_hub.api("bob")
    for i in range(7):
        api.create_repo(f"bob/page{i}")
    r = httpx.get(f"{live_hub.url}/api/models", params={"author": "bob", "limit": 3})
    assert len(r.json()) == 3 and 'rel="next"' in r.headers["link"]
    assert sorted(m.id for m in api.list_models(author="bob", limit=None)) == sorted(
        f"bob/page{i}" for i in range(7)
    )
    seen, url = [], f"{live_hub.url}/api/models?author=bob&limit=3&sort=createdAt&direction=1"
    while url:
        r = httpx.get(url)
        seen += [m["id"] for m in r.json()]
        url = r.links.get("next", {}).get("url")
    assert seen == [f"bob/page{i}" for i in range(7)]


def test_malformed_requests_get_clear_400s(live_hub):
    h = {"authorization": f"Bearer {live_hub.tokens['alice']}"}
    r = httpx.post(f"{live_hub.url}/api/repos/create", content=b"{not json", headers=h)
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    r = httpx.get(f"{live_hub.url}/api/models", params={"limit": "ten"})
    assert r.status_code == 400 and "ten" in r.json()["error"]
    live_hub.api("alice").create_repo("alice/ndjson")
    r = httpx.post(
        f"{live_hub.url}/api/models/alice/ndjson/commit/main",
        content=b'{"key": "file", "value": {"path": "../x", "content": ""}}\n',
        headers=h,
    )
    assert r.status_code == 400 and "'..' is not allowed" in r.json()["error"]
    r = httpx.post(f"{live_hub.url}/api/models/alice/ndjson/commit/main", content=b"garbage\n", headers=h)
    assert r.status_code == 400 and "malformed NDJSON" in r.json()["error"]
    r = httpx.post(f"{live_hub.url}/api/models/alice/ndjson/commit/main?create_pr=1", content=b"", headers=h)
    assert r.status_code == 400 and "pull requests" in r.json()["error"]


def test_a_lost_blob_breaks_no_listing_or_page_and_a_commit_mends_it(live_hub, caplog):
    """Files' blobs can go missing from a store (an operator's mistake, a lost bucket prefix): the model listing
    and the repo's own info still answer, without that repo's card data, and the loss is logged; a commit that
    keeps the lost file is refused naming it, one that sends it again mends the repo (preupload gives no oid for
    a lost file, so huggingface_hub does not skip it as unchanged); the web pages show what is missing."""
    api = live_hub.api("bob")
    api.create_repo("bob/lost-card")
    api.upload_file(
        path_or_fileobj=b"---\ntags: [kept]\n---\n# card\n", path_in_repo="README.md", repo_id="bob/lost-card"
    )
    api.create_repo("bob/fine-card")
    api.upload_file(
        path_or_fileobj=b"---\ntags: [fine]\n---\n# card\n", path_in_repo="README.md", repo_id="bob/fine-card"
    )
    sha = hashlib.sha256(b"---\ntags: [kept]\n---\n# card\n").hexdigest()
    live_hub.hub.store.delete(sha)
    with caplog.at_level("ERROR", logger="adapterhub.server"):
        r = httpx.get(f"{live_hub.url}/api/models", params={"author": "bob", "limit": 100})
        single = httpx.get(f"{live_hub.url}/api/models/bob/lost-card")
    assert r.status_code == 200 and single.status_code == 200
    models = {m["id"]: m for m in r.json()}
    assert "kept" not in models["bob/lost-card"]["tags"] and "fine" in models["bob/fine-card"]["tags"]
    assert any(
        "bob/lost-card" in rec.getMessage() and "README.md" in rec.getMessage() for rec in caplog.records
    )
    # the file itself is still refused, not served empty
    assert httpx.get(f"{live_hub.url}/bob/lost-card/resolve/main/README.md").status_code >= 400
    # a commit that keeps the lost file is refused, naming it; re-uploading it in the commit mends the repo
    import torch
    from safetensors.torch import save as safetensors_save

    weights = safetensors_save({"w": torch.ones(2)})
    with pytest.raises(hf_errors.HfHubHTTPError) as err:
        api.upload_file(path_or_fileobj=weights, path_in_repo="w.safetensors", repo_id="bob/lost-card")
    assert err.value.response.status_code == 409 and "README.md" in err.value.response.json()["error"]
    card = b"---\ntags: [kept]\n---\n# card\n"
    ops = [hf.CommitOperationAdd("README.md", card), hf.CommitOperationAdd("w.safetensors", weights)]
    api.create_commit("bob/lost-card", ops, commit_message="mend")
    assert httpx.get(f"{live_hub.url}/bob/lost-card/resolve/main/README.md").content == card
    # the web pages that show a lost file still answer, saying what is missing
    live_hub.hub.store.delete(sha)
    live_hub.hub.store.delete(hashlib.sha256(weights).hexdigest())
    page = httpx.get(f"{live_hub.url}/adapters/bob/lost-card")
    assert page.status_code == 200 and "bob/lost-card" in page.text
    for path in ("README.md", "w.safetensors"):
        page = httpx.get(f"{live_hub.url}/adapters/bob/lost-card/blob/main/{path}")
        assert page.status_code == 200 and "missing from the hub&#39;s blob store" in page.text, path
