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
    return [
        (m.name, m.isfile(), b"".join(bytes(c) for c in chunks) if m.isfile() else b"")
        for m, chunks in _tar_members(body)
    ]


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
        list(_tar_members(whole[: start + 1000]))


def _with_header(body: bytes, offset: int, field: slice, value: bytes) -> bytes:
    """``body`` with one header field replaced and the header's checksum made valid again."""
    header = bytearray(body[offset : offset + 512])
    header[field] = value.ljust(field.stop - field.start, b"\0")
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    return body[:offset] + bytes(header) + body[offset + 512 :]


def _finishes(body: bytes):
    """Run the reader in a thread: a reader that never moves forward must fail the test, not hang it."""
    import threading

    outcome: list = []

    def run():
        try:
            outcome.append(by_us(body))
        except tarfile.ReadError as error:
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the tar reader did not finish"
    return outcome[0]


@pytest.mark.parametrize("size", [b"-1000", b"-0", b"0o17", b"1_0", b"9"])
def test_sizes_must_be_plain_octal_digits(size):
    data = b"x" * 700
    for kind in (tarfile.REGTYPE, tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME):
        body = archive(tarfile.PAX_FORMAT, [("a", data), ("b", data)])
        body = _with_header(body, 0, slice(156, 157), kind)
        body = _with_header(
            body, 0, slice(124, 136), size
        )  # a negative size would point back at the same header
        assert isinstance(_finishes(body), tarfile.ReadError), (kind, size)


def test_a_pax_size_record_wins_over_the_header_and_must_be_a_number():
    data = bytes(range(256)) * 5
    info = tarfile.TarInfo("weights.bin")
    info.size = len(data)
    info.pax_headers = {"size": str(len(data))}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(data))
    body = buf.getvalue()
    second = 512 + 512  # the pax header and its records, then the member's own header
    assert int(body[second + 124 : second + 136].strip(b"\0 "), 8) == len(data)
    zeroed = _with_header(
        body, second, slice(124, 136), b"0"
    )  # only the pax record says how long the file is
    assert by_us(zeroed) == by_tarfile(zeroed) == [("weights.bin", True, data)]
    bad = body.replace(f"size={len(data)}".encode(), b"size=abcd", 1)  # records are data: no checksum to mend
    assert isinstance(_finishes(bad), tarfile.ReadError)
