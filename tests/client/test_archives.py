"""Adapters zipped at a URL: unsafe archives are refused before anything is written outside the target."""

from __future__ import annotations

import stat
import zipfile

import pytest

from adapterhub.client import IntegrityError
from adapterhub.client.archives import safe_extract


def _zip(path, entries):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            if isinstance(data, zipfile.ZipInfo):
                zf.writestr(data, b"target")
            else:
                zf.writestr(name, data)
    return path


@pytest.mark.parametrize(
    "name", ["../evil.txt", "/abs/evil.txt", "a/../../evil.txt", "C:/evil.txt", "a\\..\\evil"]
)
def test_paths_that_escape_are_refused(tmp_path, name):
    archive = _zip(tmp_path / "a.zip", [("ok/adapter_config.json", b"{}"), (name, b"x")])
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(IntegrityError, match="unsafe path"):
        safe_extract(archive, dest)
    assert list(dest.iterdir()) == [] and not (tmp_path / "evil.txt").exists()


def test_links_and_bombs_are_refused(tmp_path):
    link = zipfile.ZipInfo("link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with pytest.raises(IntegrityError, match="symbolic link"):
        safe_extract(_zip(tmp_path / "l.zip", [("link", link)]), tmp_path)
    with pytest.raises(IntegrityError, match="zip bomb"):
        safe_extract(_zip(tmp_path / "b.zip", [("big", b"\0" * 5_000_000)]), tmp_path)
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(IntegrityError, match="not a valid zip"):
        safe_extract(tmp_path / "junk.zip", tmp_path)


def test_a_good_archive_is_extracted_byte_for_byte(tmp_path):
    entries = [("sst/adapter_config.json", b'{"a": 1}'), ("sst/adapter.safetensors", bytes(range(256)) * 4)]
    dest = tmp_path / "out"
    dest.mkdir()
    names = safe_extract(_zip(tmp_path / "g.zip", entries), dest)
    assert sorted(names) == sorted(n for n, _ in entries)
    for name, data in entries:
        assert (dest / name).read_bytes() == data


def test_adapter_folder_on_a_plain_web_server(tmp_path, monkeypatch):
    """A folder of AdapterHub files behind any static web server (here Python's http.server on loopback)."""
    import functools
    import http.server
    import threading

    import torch
    from client_support import adapter_model, fresh_model
    from tiny_models import inputs, output_of

    from adapterhub.client import OfflineError

    monkeypatch.setenv("ADAPTERHUB_CACHE", str(tmp_path / "cache"))
    model = adapter_model(71)
    model.save_adapter(tmp_path / "www" / "adapters" / "sst", "sst")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/adapters/sst/"
    try:
        loaded = fresh_model()
        loaded.load_adapter(url, set_active=True)
        assert torch.allclose(output_of(loaded, inputs()), output_of(model, inputs()))
        (cached,) = (tmp_path / "cache" / "urls").glob("*/folder/adapter.safetensors")
        cached.write_bytes(cached.read_bytes()[:-1] + b"\\0")  # damaged in the cache: fetched again
        again = fresh_model()
        again.load_adapter(url, set_active=True)
        assert torch.allclose(output_of(again, inputs()), output_of(model, inputs()))
        with pytest.raises(Exception, match="does not hold an adapter"):
            fresh_model().load_adapter(url.replace("/sst/", "/nothing/"))
    finally:
        server.shutdown()
    monkeypatch.setenv("ADAPTERHUB_OFFLINE", "1")
    assert fresh_model().load_adapter(url) == "sst"  # from the cache, the server is gone
    with pytest.raises(OfflineError):
        fresh_model().load_adapter(url.replace("/sst/", "/other/"))


def test_zip_at_a_url_reports_its_download_progress_when_asked(tmp_path, monkeypatch):
    """``progress=True`` for an archive URL drives the same progress bar as hub downloads, over its bytes."""
    import contextlib
    import functools
    import http.server
    import threading

    from client_support import adapter_model, fresh_model

    from adapterhub.client import archives

    monkeypatch.setenv("ADAPTERHUB_CACHE", str(tmp_path / "cache"))
    adapter_model(72).save_adapter(tmp_path / "sst", "sst")
    (tmp_path / "www").mkdir()
    archive = _zip(
        tmp_path / "www" / "sst.zip", [(p.name, p.read_bytes()) for p in (tmp_path / "sst").iterdir()]
    )
    bars = []

    @contextlib.contextmanager
    def recording_bar(enabled, total, label):
        bar = {"enabled": enabled, "total": total, "label": label, "done": 0}
        bars.append(bar)
        yield lambda n: bar.update(done=bar["done"] + n)

    monkeypatch.setattr(archives, "progress_bar", recording_bar)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/sst.zip"
        assert fresh_model().load_adapter(url, progress=True) == "sst"
    finally:
        server.shutdown()
    size = archive.stat().st_size
    assert bars == [{"enabled": True, "total": size, "label": "sst.zip", "done": size}]
