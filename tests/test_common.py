"""The shared wire module: patterns, hashes and sizes that client and server both use."""

import hashlib
import stat

import pytest

from adapterhub.common.cards import opens_front_matter, split_front_matter
from adapterhub.common import files as common_files
from adapterhub.common.files import atomic_write, atomic_write_bytes, atomic_write_text
from adapterhub.common.hashing import git_blob_hasher, git_blob_id, sha256_file
from adapterhub.common.sizes import human_size
from adapterhub.common.wire import BUNDLE_MANIFEST_NAME, COMMIT_RE, REPO_ID_RE


def test_hashes_of_a_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"hello\n")
    assert git_blob_id(path) == "ce013625030ba8dba906f756967f9e9ca394464a"  # git hash-object
    assert sha256_file(path) == hashlib.sha256(b"hello\n").hexdigest()
    big = tmp_path / "big"
    data = bytes(range(256)) * 9000  # more than one read
    big.write_bytes(data)
    assert sha256_file(big) == hashlib.sha256(data).hexdigest()
    hasher = git_blob_hasher(len(data))
    hasher.update(data)
    assert git_blob_id(big) == hasher.hexdigest()
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert git_blob_id(empty) == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"


def test_patterns_take_whole_strings_only():
    commit = "0123456789abcdef0123456789abcdef01234567"
    assert COMMIT_RE.match(commit)
    for bad in (commit + "\n", commit.upper(), commit[:-1], commit + "0", "main"):
        assert not COMMIT_RE.match(bad), bad
    assert REPO_ID_RE.match("me/sst-2.v1")
    for bad in ("me/sst\n", "me", "me/a/b", "-me/x", "me/" + "a" * 97):
        assert not REPO_ID_RE.match(bad), bad
    assert BUNDLE_MANIFEST_NAME.startswith(".")  # hidden: never a file of a repository's snapshot


def test_sizes_in_decimal_units():
    assert [human_size(n) for n in (0, 999, 1000, 459_800, 1_234_567_890, 5 * 10**15)] == [
        "0 B",
        "999 B",
        "1.0 kB",
        "459.8 kB",
        "1.2 GB",
        "5000.0 TB",
    ]


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    path = tmp_path / "new" / "f.json"
    atomic_write_text(path, "one")
    assert path.read_text() == "one"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # tokens are written this way: owner only

    def half_then_fail(tmp):
        with open(tmp, "w") as f:
            f.write("tw")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "one"
    assert sorted(p.name for p in path.parent.iterdir()) == ["f.json"]  # no temporary file left


def test_atomic_write_over_a_stale_temporary_file_never_through_a_link(tmp_path, monkeypatch):
    """A temporary name is this process's (pid + counter): a file a killed process with the same pid left there is
    emptied and narrowed to the mode asked for; a symlink there is never followed."""
    names = iter([str(tmp_path / ".stale.tmp"), str(tmp_path / ".link.tmp")])
    monkeypatch.setattr(common_files, "temp_path", lambda final, suffix=".tmp": next(names))
    (tmp_path / ".stale.tmp").write_bytes(b"junk" * 1000)
    (tmp_path / ".stale.tmp").chmod(0o666)
    atomic_write_bytes(tmp_path / "a", b"new")
    assert (tmp_path / "a").read_bytes() == b"new"
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o600
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    (tmp_path / ".link.tmp").symlink_to(victim)
    with pytest.raises(OSError):
        atomic_write_bytes(tmp_path / "b", b"evil", mode=0o644)
    assert victim.read_bytes() == b"keep" and not (tmp_path / "b").exists()


def test_atomic_write_mode_and_missing_folder(tmp_path):
    path = tmp_path / "made" / "on" / "demand"
    atomic_write_bytes(path, b"x" * 100_000, mode=0o644)
    assert path.read_bytes() == b"x" * 100_000
    assert stat.S_IMODE(path.stat().st_mode) == 0o644 & ~_umask()
    assert sorted(p.name for p in path.parent.iterdir()) == ["demand"]


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_front_matter_is_between_two_dash_lines():
    assert split_front_matter("---\nlicense: mit\n---\n# Title\n") == ("license: mit\n", "# Title\n")
    assert split_front_matter("\ufeff---\r\na: 1\r\n---\r\nbody") == ("a: 1\r\n", "body")  # BOM, CRLF
    assert split_front_matter("---\n---\nbody") == ("", "body")  # empty front matter
    assert split_front_matter("---\na: 1\n---") == ("a: 1\n", "")  # nothing after it
    assert split_front_matter("---\na: 1\n----\nb: 2\n---\n") == (
        "a: 1\n----\nb: 2\n",
        "",
    )  # '----' closes nothing
    assert split_front_matter("# no front matter\n---\n") == (None, "# no front matter\n---\n")
    assert split_front_matter("---\na: 1\n") == (None, "---\na: 1\n")  # never closed
    assert opens_front_matter("---\na: 1\n") and opens_front_matter("\ufeff--- \n")
    assert not opens_front_matter("----\n") and not opens_front_matter("# ---\n")
