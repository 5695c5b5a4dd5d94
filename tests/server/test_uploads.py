"""Upload checks: unsafe paths and zips (unit tests of adapterhub.server.uploads), and refusals through the
HF commit endpoint of a live hub that leave nothing behind (no rows, no blobs, no staged files); the load
check of real adapters saved by `adapters` 1.3.0 and PEFT, synchronous and in the background."""

from __future__ import annotations

import io
import json
import pickle
import stat
import time
import zipfile
from pathlib import Path

import httpx
import pytest
import torch

from adapterhub.server.uploads import Limits, Staging, UploadError, clean_path, extract_zip, looks_like_pickle

hf = pytest.importorskip("huggingface_hub")
from huggingface_hub import errors as hf_errors  # noqa: E402

INTEROP = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "interop"
needs_fixtures = pytest.mark.skipif(not INTEROP.is_dir(), reason="../shared/fixtures/interop is missing")
LIMITS = Limits(max_file_size=4 << 20, max_commit_size=8 << 20, max_files=50, max_zip_ratio=100)


# --- unit tests: paths and zips -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad", ["../x", "a/../../b", "/etc/passwd", "C:/x", "a\\b", "", ".git/config", "a/../.."]
)
def test_clean_path_refuses(bad):
    with pytest.raises(UploadError):
        clean_path(bad)


def test_clean_path_normalises():
    assert clean_path("a/./b//c.txt") == "a/b/c.txt"


def _zip(entries: dict[str, bytes], symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, "/etc/passwd")
    return buf.getvalue()


@pytest.mark.parametrize(
    "entries,symlink,code",
    [
        ({"ok.txt": b"1", "../evil.txt": b"x"}, None, "UnsafeZip"),
        ({"/abs/evil.txt": b"x"}, None, "UnsafeZip"),
        ({"ok.txt": b"1"}, "link", "UnsafeZip"),
        ({"bomb.txt": b"\0" * (20 << 20)}, None, "FileTooLarge"),  # over max_file_size as declared
        ({"a/model.bin": b"x"}, None, "PickleRefused"),
        ({"weights.dat": pickle.dumps({"w": [1, 2, 3]}, protocol=4)}, None, "PickleRefused"),
    ],
)
def test_zip_refusals_leave_nothing(tmp_path, entries, symlink, code):
    with Staging(tmp_path / "tmp", LIMITS) as st:
        with pytest.raises(UploadError) as e:
            extract_zip(io.BytesIO(_zip(entries, symlink)), st)
        assert e.value.code == code, e.value.message
    assert list((tmp_path / "tmp").iterdir()) == []


def test_zip_bomb_by_ratio(tmp_path):
    limits = Limits(max_file_size=64 << 20, max_commit_size=64 << 20, max_files=10, max_zip_ratio=100)
    data = _zip({"zeros.bin.txt": b"\0" * (30 << 20)})
    assert len(data) < 100_000  # 30 MB of zeros in a small archive
    with Staging(tmp_path / "tmp", limits) as st:
        with pytest.raises(UploadError) as e:
            extract_zip(io.BytesIO(data), st)
    assert e.value.code == "ZipBomb" and "ratio" in e.value.message


def test_zip_extracts_with_hashes_and_strips_the_common_folder(tmp_path):
    import hashlib

    files = {"my-adapter/adapter_config.json": b"{}", "my-adapter/head/x.txt": b"hello"}
    with Staging(tmp_path / "tmp", LIMITS) as st:
        assert sorted(extract_zip(io.BytesIO(_zip(files)), st)) == ["adapter_config.json", "head/x.txt"]
        assert st.files["head/x.txt"].sha256 == hashlib.sha256(b"hello").hexdigest()
        assert st.files["head/x.txt"].git_oid == hashlib.sha1(b"blob 5\0hello").hexdigest()
        assert st.files["head/x.txt"].tmp.read_bytes() == b"hello"


# --- refusals through the live server -----------------------------------------------------------------


def _state(live_hub):
    from adapterhub.server.models import Blob, Commit, CommitFile, Validation

    staged = [p for p in (live_hub.data_dir / "tmp").rglob("*")]
    return (live_hub.count(Commit), live_hub.count(Blob), live_hub.count(CommitFile), live_hub.count(Validation),
            live_hub.blob_files(), staged)  # fmt: skip


def _refused(live_hub, repo, files: dict[str, bytes], status: int, needle: str):
    """Commit ``files`` with huggingface_hub; expect an HTTP error with ``needle`` in it and no trace left."""
    api = live_hub.api("alice")
    before = _state(live_hub)
    ops = [hf.CommitOperationAdd(path_in_repo=p, path_or_fileobj=d) for p, d in files.items()]
    with pytest.raises(hf_errors.HfHubHTTPError) as e:
        api.create_commit(repo, operations=ops, commit_message="bad")
    assert e.value.response.status_code == status
    assert needle in str(e.value), str(e.value)
    assert _state(live_hub) == before
    return str(e.value)


def _adapter_files(kind: str = "seq_bn", base: str = "alice/bert-tiny") -> dict[str, bytes]:
    """An adapter folder from the interop fixtures, with a card naming its base model."""
    folder = INTEROP / "bert" / ("peft" if kind.startswith("lora") else "adapters") / kind
    folder = folder if kind.startswith("lora") else folder / "safetensors"
    files = {
        p.name: p.read_bytes()
        for p in folder.iterdir()
        if p.suffix in (".json", ".safetensors") and p.name not in ("meta.json", "expected.safetensors")
    }
    files["README.md"] = f"---\nbase_model: {base}\nlicense: apache-2.0\n---\n# {kind}\n".encode()
    return files


class _Calls:
    def __reduce__(self):
        return (print, ("called",))


def _is_pickle(data: bytes) -> bool:
    return looks_like_pickle(io.BytesIO(data), len(data))


@pytest.mark.parametrize("protocol", range(6))
def test_pickles_that_import_are_found_wherever_the_import_sits(protocol):
    assert _is_pickle(pickle.dumps(_Calls(), protocol=protocol))
    assert _is_pickle(pickle.dumps(["x" * 200_000, _Calls()], protocol=protocol))  # past any fixed head
    assert _is_pickle(pickle.dumps([b"\0" * 3_000_000, _Calls()], protocol=protocol))
    assert _is_pickle(
        pickle.dumps([_Calls(), "y" * 1000], protocol=protocol)[:-200]
    )  # cut off after the call
    assert _is_pickle(pickle.dumps(7, protocol=protocol) + pickle.dumps(_Calls(), protocol=protocol))
    # a pickle that imports nothing counts from protocol 2 on (it announces itself as one)
    assert _is_pickle(pickle.dumps({"a": [1, 2.5, "s"]}, protocol=protocol)) == (protocol >= 2)


def test_legacy_torch_save_is_a_pickle():
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(3)}, buf, _use_new_zipfile_serialization=False)
    assert _is_pickle(buf.getvalue())


def test_random_bytes_are_not_taken_for_pickles():
    """Length fields in other data (a first byte that reads as a long string or bytes opcode, about 3 % of
    random files) once made an upload count as a cut-off pickle; now only an import that an unpickler would
    reach counts."""
    generator = torch.Generator().manual_seed(0)
    found = 0
    for first in [None, *b"BTXUV\x8d\x8e\x96\x82\x83\x84"]:
        for _ in range(200):
            data = bytes(torch.randint(0, 256, (4096,), generator=generator, dtype=torch.uint8).tolist())
            if first is not None:
                data = bytes([first]) + data[1:]
            found += _is_pickle(data)
    assert found == 0


def test_pickle_weights_refused(live_hub):
    live_hub.api("alice").create_repo("alice/pickles")
    _refused(live_hub, "alice/pickles", {"pytorch_adapter.bin": b"\x80\x04data"}, 422, "pickle")
    # a pickle renamed to .safetensors is not a valid safetensors file
    _refused(
        live_hub, "alice/pickles", {"adapter.safetensors": pickle.dumps({"a": 1}, protocol=4)}, 422, "pickle"
    )
    _refused(
        live_hub,
        "alice/pickles",
        {"adapter.safetensors": b"\x10\x00\x00\x00\x00\x00\x00\x00{}"},
        422,
        "safetensors",
    )


def test_oversize_file_refused(live_hub, monkeypatch):
    live_hub.api("alice").create_repo("alice/big")
    monkeypatch.setattr(live_hub.hub.limits, "max_file_size", 1000)
    _refused(live_hub, "alice/big", {"big.txt": b"x" * 5000}, 413, "too large")


@needs_fixtures
def test_unknown_base_model_refused(live_hub):
    live_hub.api("alice").create_repo("alice/orphan")
    msg = _refused(
        live_hub, "alice/orphan", _adapter_files(base="nobody/no-such-model"), 422, "unknown base model"
    )
    assert "nobody/no-such-model" in msg


@needs_fixtures
def test_valid_adapter_passes_and_mismatched_weights_are_refused(live_hub, base_repo, tmp_path):
    from safetensors.torch import load, save

    api = live_hub.api("alice")
    api.create_repo("alice/seq-bn")
    files = _adapter_files("seq_bn")
    api.create_commit(
        "alice/seq-bn",
        operations=[hf.CommitOperationAdd(p, d) for p, d in files.items()],
        commit_message="adapter",
    )
    r = httpx.get(f"{live_hub.url}/api/models/alice/seq-bn/validation").json()
    assert r["status"] == "passed", r
    assert r["method"] == "bottleneck" and r["num_params"] > 0
    assert (
        r["report"]["adapters"][0]["base_repo"] == base_repo
        and r["report"]["adapters"][0]["changed_modules"] >= 1
    )
    assert httpx.get(f"{live_hub.url}/api/models/alice/seq-bn").json()["validation"]["status"] == "passed"
    # weights that do not match the config: one tensor dropped, one foreign tensor added
    weights = load(files["adapter.safetensors"])
    dropped = sorted(weights)[0]
    weights.pop(dropped)
    weights["encoder.layer.0.output.adapters.mytask.extra"] = torch.zeros(3)
    bad = dict(files, **{"adapter.safetensors": save(weights)})
    api.create_repo("alice/seq-bn-bad")
    msg = _refused(live_hub, "alice/seq-bn-bad", bad, 422, "does not validate")
    assert "missing" in msg and "unexpected" in msg


@needs_fixtures
def test_peft_lora_checked_against_the_base_model(live_hub, base_repo):
    from safetensors.torch import load, save

    api = live_hub.api("alice")
    api.create_repo("alice/lora")
    files = _adapter_files("lora_qv")
    api.create_commit(
        "alice/lora",
        operations=[hf.CommitOperationAdd(p, d) for p, d in files.items()],
        commit_message="lora",
    )
    r = httpx.get(f"{live_hub.url}/api/models/alice/lora/validation").json()
    assert r["status"] == "passed" and r["method"] == "lora" and r["num_params"] == 2048, (
        r
    )  # 2 layers x (q, v) x (8x32 + 32x8)
    # rank 8 in the config, rank 4 in the weights
    weights = {
        k: (v[:4] if "lora_A" in k else v[:, :4]).contiguous()
        for k, v in load(files["adapter_model.safetensors"]).items()
    }
    api.create_repo("alice/lora-bad")
    msg = _refused(
        live_hub,
        "alice/lora-bad",
        dict(files, **{"adapter_model.safetensors": save(weights)}),
        422,
        "shape mismatch",
    )
    assert "lora_A" in msg
    # a target module without its tensors
    weights = load(files["adapter_model.safetensors"])
    weights = {k: v for k, v in weights.items() if "layer.1.attention.self.value" not in k}
    msg = _refused(
        live_hub,
        "alice/lora-bad",
        dict(files, **{"adapter_model.safetensors": save(weights)}),
        422,
        "missing keys",
    )
    assert "layer.1.attention.self.value" in msg


@needs_fixtures
def test_peft_prefix_passes_and_a_method_without_a_check_is_unverified(live_hub, base_repo):
    api = live_hub.api("alice")
    api.create_repo("alice/prefix")
    folder = INTEROP / "bert" / "peft" / "prefix_tuning"
    files = {
        p.name: p.read_bytes()
        for p in folder.iterdir()
        if p.name in ("adapter_config.json", "adapter_model.safetensors")
    }
    files["README.md"] = b"---\nbase_model: alice/bert-tiny\n---\n"
    api.create_commit(
        "alice/prefix", operations=[hf.CommitOperationAdd(p, d) for p, d in files.items()], commit_message="p"
    )
    r = httpx.get(f"{live_hub.url}/api/models/alice/prefix/validation").json()
    assert r["status"] == "passed" and r["method"] == "prefix_tuning", r  # loaded by the library
    # a PEFT method the library has no method for: stored, without a verdict
    files["adapter_config.json"] = json.dumps(
        dict(json.loads(files["adapter_config.json"]), peft_type="LOHA")
    ).encode()
    api.create_repo("alice/loha")
    api.create_commit(
        "alice/loha", operations=[hf.CommitOperationAdd(p, d) for p, d in files.items()], commit_message="l"
    )
    r = httpx.get(f"{live_hub.url}/api/models/alice/loha/validation").json()
    assert r["status"] == "unverified" and r["errors"] == [], r


@needs_fixtures
def test_background_validation_flags_a_failed_commit(live_hub, base_repo, monkeypatch):
    """With validation_wait=0 the upload is stored at once as pending; the worker then flags it failed."""
    from safetensors.torch import load, save

    monkeypatch.setattr(live_hub.hub.settings, "validation_wait", 0.0)
    api = live_hub.api("alice")
    api.create_repo("alice/async")
    files = _adapter_files("seq_bn")
    weights = load(files["adapter.safetensors"])
    weights.pop(sorted(weights)[-1])
    files["adapter.safetensors"] = save(weights)
    commit = api.create_commit(
        "alice/async", operations=[hf.CommitOperationAdd(p, d) for p, d in files.items()], commit_message="x"
    )
    first = httpx.get(f"{live_hub.url}/api/models/alice/async/validation").json()
    assert first["commit"] == commit.oid and first["status"] in ("pending", "failed")
    r = _settled_validation(live_hub, "alice/async")
    assert r["status"] == "failed" and any("missing" in e for e in r["errors"]), r
    assert api.model_info("alice/async").sha == commit.oid  # stored, but flagged


def _settled_validation(live_hub, repo_id: str, timeout: float = 60) -> dict:
    """The repository's validation answer once it is no longer pending (or the last one after ``timeout`` s)."""
    deadline = time.time() + timeout
    while True:
        r = httpx.get(f"{live_hub.url}/api/models/{repo_id}/validation").json()
        if r["status"] != "pending" or time.time() >= deadline:
            return r
        time.sleep(0.1)


def test_nothing_left_in_staging(live_hub):
    assert [p.name for p in (live_hub.data_dir / "tmp").iterdir()] == []


@needs_fixtures
def test_unfinished_validations_are_requeued_at_start(live_hub, base_repo):
    """A commit left 'pending' (e.g. the server stopped during its load check) is validated again at start."""
    from adapterhub.server.models import Validation

    api = live_hub.api("alice")
    api.create_repo("alice/requeue")
    files = _adapter_files("seq_bn")
    oid = api.create_commit(
        "alice/requeue",
        operations=[hf.CommitOperationAdd(p, d) for p, d in files.items()],
        commit_message="x",
    ).oid
    with live_hub.hub.db.session() as s:
        v = s.get(Validation, oid)
        assert v.status == "passed"
        v.status, v.report = "pending", {}
    live_hub.hub.requeue_pending()
    r = _settled_validation(live_hub, "alice/requeue")
    assert r["status"] == "passed" and r["report"]["adapters"][0]["num_params"] > 0, r


def test_oversize_content_refused_in_the_commit_itself(live_hub, monkeypatch):
    """A client that skips preupload: the commit endpoint counts the decoded bytes itself."""
    import base64

    live_hub.api("alice").create_repo("alice/big2")
    monkeypatch.setattr(live_hub.hub.limits, "max_file_size", 1000)
    before = _state(live_hub)
    line = {
        "key": "file",
        "value": {"path": "big.txt", "encoding": "base64", "content": base64.b64encode(b"y" * 3000).decode()},
    }
    body = json.dumps({"key": "header", "value": {"summary": "big"}}) + "\n" + json.dumps(line) + "\n"
    r = httpx.post(f"{live_hub.url}/api/models/alice/big2/commit/main", content=body,
                   headers={"authorization": f"Bearer {live_hub.tokens['alice']}"})  # fmt: skip
    assert (
        r.status_code == 413
        and r.headers["x-error-code"] == "FileTooLarge"
        and "3000 bytes" in r.json()["error"]
    )
    assert _state(live_hub) == before


@needs_fixtures
def test_config_and_card_schemas_refused(live_hub, base_repo):
    live_hub.api("alice").create_repo("alice/schemas")
    files = _adapter_files("seq_bn")
    bad_cfg = dict(files, **{"adapter_config.json": json.dumps({"hello": "world"}).encode()})
    _refused(live_hub, "alice/schemas", bad_cfg, 422, "neither an AdapterHub config")
    cfg = json.loads(files["adapter_config.json"])
    cfg["hidden_size"] = "big"
    _refused(
        live_hub,
        "alice/schemas",
        dict(files, **{"adapter_config.json": json.dumps(cfg).encode()}),
        422,
        "hidden_size",
    )
    # a card whose front matter has the wrong types: huggingface_hub asks /api/validate-yaml first
    bad_card = dict(files, **{"README.md": b"---\nbase_model: alice/bert-tiny\nlicense: [1, 2]\n---\n"})
    before = _state(live_hub)
    with pytest.raises(ValueError, match="license"):
        live_hub.api("alice").create_commit(
            "alice/schemas",
            operations=[hf.CommitOperationAdd(p, d) for p, d in bad_card.items()],
            commit_message="x",
        )
    assert _state(live_hub) == before


def test_commit_to_new_repo_leaves_no_repo_when_refused(live_hub):
    """The one-step path for upload forms: a refused first commit removes the repository it created."""
    from adapterhub.server import auth, commits
    from adapterhub.server.models import Repo

    with live_hub.hub.db.session() as s:
        caller = auth.caller_from_header(s, f"Bearer {live_hub.tokens['alice']}")
        s.expunge(caller.account)
    repos_before = live_hub.count(Repo)
    with Staging(live_hub.hub.tmp_dir, live_hub.hub.limits) as st:
        ops = [
            commits.Op(
                "add",
                "weights.safetensors",
                staged=st.add_bytes("weights.safetensors", b"not safetensors at all"),
            )
        ]
        with pytest.raises(UploadError, match="not a valid safetensors file"):
            commits.commit_to_new_repo(live_hub.hub, caller, "alice/form-upload", ops, "upload")
    assert live_hub.count(Repo) == repos_before
    with Staging(live_hub.hub.tmp_dir, live_hub.hub.limits) as st:
        ops = [commits.Op("add", "notes.txt", staged=st.add_bytes("notes.txt", b"fine"))]
        repo_id, oid, status = commits.commit_to_new_repo(live_hub.hub, caller, "form-upload2", ops, "upload")
    assert (repo_id, status) == ("alice/form-upload2", "skipped")
    assert httpx.get(f"{live_hub.url}/alice/form-upload2/resolve/{oid}/notes.txt").content == b"fine"
