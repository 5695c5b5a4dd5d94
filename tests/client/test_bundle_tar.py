"""The bundle reader's own tar parsing (``bundle._tar_members``) against the standard library's ``tarfile``: the
same members, names and bytes for archives written in the pax, GNU and ustar formats; damaged archives refused."""

from __future__ import annotations

import io
import random
import tarfile

import pytest

from adapterhub.client.bundle import _tar_members

FILES = [
    ("adapter_config.json", b'{"a": 1}' * 100),
    ("nested/" * 16 + "weights.safetensors", bytes(random.Random(1).randbytes(70_000))),
    ("ünïcödé.txt", "ä".encode() * 7),
    ("empty", b""),
    ("exactly-one-block", b"x" * 512),
]


def archive(fmt: int, files=FILES, with_dir: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, encoding="utf-8") as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if with_dir:
            info = tarfile.TarInfo("a-folder")
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
    return buf.getvalue()


def by_tarfile(body: bytes) -> list[tuple[str, bool, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:", encoding="utf-8") as tar:
        return [(m.name, m.isfile(), tar.extractfile(m).read() if m.isfile() else b"") for m in tar]


def by_us(body: bytes) -> list[tuple[str, bool, bytes]]:
    return [(m.name, m.isfile(), b"".join(bytes(c) for c in chunks) if m.isfile() else b"")
            for m, chunks in _tar_members(body)]


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_members_are_the_ones_tarfile_reads(fmt):
    files = FILES if fmt != tarfile.USTAR_FORMAT else [(n, d) for n, d in FILES if n.isascii()]
    body = archive(fmt, files, with_dir=True)
    ours = by_us(body)
    assert ours == by_tarfile(body)
    assert [(n, d) for n, _, d in ours[:-1]] == files
    assert ours[-1][:2] == ("a-folder", False)  # not a file: read_bundle refuses it as unexpected


def test_views_share_the_body():
    body = archive(tarfile.PAX_FORMAT)
    member, (view,) = next(m for m in _tar_members(body) if m[0].name.endswith(".safetensors"))
    assert isinstance(view, memoryview) and view.obj is body


def test_damaged_archives_are_refused():
    body = bytearray(archive(tarfile.PAX_FORMAT))
    body[5] ^= 0x20  # a byte of the first header's name
    with pytest.raises(tarfile.ReadError, match="checksum"):
        list(_tar_members(bytes(body)))
    whole = archive(tarfile.PAX_FORMAT)
    start = whole.index(FILES[1][1][:64])  # cut inside the second file's bytes
    with pytest.raises(tarfile.ReadError, match="cut short"):
        list(_tar_members(whole[:start + 1000]))
