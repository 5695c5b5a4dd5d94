"""Run by test_hf03.py with the *old* huggingface_hub (0.36.x, in .venv-hf03) against a live hub.
Usage: python hf03_client.py TOKENS_JSON WORKDIR  (HF_ENDPOINT must point at the hub). Prints JSON results."""

import json
import os
import sys
from pathlib import Path

import huggingface_hub as hf
from huggingface_hub.utils import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

tokens = json.loads(sys.argv[1])
work = Path(sys.argv[2])
out = {"version": hf.__version__, "endpoint": hf.constants.ENDPOINT}
api = hf.HfApi(token=tokens["alice"])

src = work / "src"
(src / "sub").mkdir(parents=True)
(src / "README.md").write_text("---\nlicense: mit\n---\n# old client\n")
(src / "config.json").write_text(json.dumps({"model_type": "bert"}))
(src / "sub" / "blob.dat").write_bytes(os.urandom(300_000))
files = {p.relative_to(src).as_posix(): p.read_bytes() for p in src.rglob("*") if p.is_file()}

out["create_url"] = str(api.create_repo("alice/old03"))
out["create_again"] = str(api.create_repo("alice/old03", exist_ok=True))
out["commit"] = api.upload_folder(repo_id="alice/old03", folder_path=str(src)).oid
out["download_equal"] = all(
    Path(hf.hf_hub_download("alice/old03", p, cache_dir=work / "c1", token=False)).read_bytes() == d
    for p, d in files.items()
)
snap = Path(hf.snapshot_download("alice/old03", cache_dir=work / "c2", token=False))
out["snapshot_equal"] = {
    p.relative_to(snap).as_posix(): p.read_bytes() for p in snap.rglob("*") if p.is_file()
} == files

CHANGED = json.dumps({"model_type": "bert", "v": 2}).encode()
api.create_tag("alice/old03", tag="v1")
api.upload_file(path_or_fileobj=CHANGED, path_in_repo="config.json", repo_id="alice/old03")
out["tag_pins"] = (
    Path(
        hf.hf_hub_download("alice/old03", "config.json", revision="v1", cache_dir=work / "c3", token=False)
    ).read_bytes()
    == files["config.json"]
)
out["main_moves"] = (
    Path(hf.hf_hub_download("alice/old03", "config.json", cache_dir=work / "c4", token=False)).read_bytes()
    == CHANGED
)
out["tags"] = [t.name for t in api.list_repo_refs("alice/old03").tags]

api.create_repo("alice/old03-private", private=True)
api.upload_file(path_or_fileobj=b"p", path_in_repo="p.txt", repo_id="alice/old03-private")


def error_name(fn):
    try:
        fn()
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as e:
        return type(e).__name__
    except Exception as e:  # noqa: BLE001
        return "other:" + type(e).__name__
    return "none"


out["private_anonymous"] = error_name(
    lambda: hf.hf_hub_download("alice/old03-private", "p.txt", cache_dir=work / "c5", token=False)
)
out["private_bob"] = error_name(
    lambda: hf.hf_hub_download("alice/old03-private", "p.txt", cache_dir=work / "c6", token=tokens["bob"])
)
out["missing_file"] = error_name(
    lambda: hf.hf_hub_download("alice/old03", "nope.txt", cache_dir=work / "c7", token=False)
)
out["missing_revision"] = error_name(
    lambda: hf.hf_hub_download(
        "alice/old03", "config.json", revision="nope", cache_dir=work / "c8", token=False
    )
)
out["whoami"] = api.whoami()["name"]
print(json.dumps(out))
