"""The library imports the client only when it is used, and neither ever imports the server."""

import subprocess
import sys

CHECK = """
import sys
import adapterhub
assert "adapterhub.client" not in sys.modules, "importing adapterhub imported the hub client"
assert callable(adapterhub.list_adapters)
import adapterhub.client, adapterhub.client.cli
from adapterhub.client import adapter_folder, push_adapter, list_adapters
leaked = sorted(m for m in sys.modules if m.startswith(("adapterhub.server", "fastapi", "sqlalchemy")))
assert not leaked, leaked
print("ok")
"""


def test_library_and_client_never_import_the_server():
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
