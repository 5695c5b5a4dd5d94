"""The packages of adapterhub depend on each other in one direction only, and no files import each other in a
circle except the few listed (with why) below.

Layers, from the bottom: ``adapterhub.version`` and the shared wire module ``adapterhub.common`` (no other
part of adapterhub); the library (``adapterhub.library``); the hub client (``adapterhub.client``: the library,
never the server: it talks HTTP); the hub server (``adapterhub.server``: the library to validate adapters,
never the client); on top the programs (``adapterhub`` itself, ``cli``, ``train_cli``, ``training``, ``data``,
``lifecycle``), which may use everything.
"""

import os
import subprocess
import sys

from import_graph import circles, import_graph

LAYERS = {  # package -> the packages its files may import (besides their own)
    "adapterhub.version": set(),
    "adapterhub.common": {"adapterhub.version"},
    "adapterhub.library": {"adapterhub.version", "adapterhub.common"},
    "adapterhub.client": {"adapterhub.version", "adapterhub.common", "adapterhub.library"},
    "adapterhub.server": {"adapterhub.version", "adapterhub.common", "adapterhub.library"},
}

# Circles between files of one package that are known, with the reason each still exists: (package, the
# modules at its heart). A circle is allowed if it stays inside the package and contains those modules (other
# files of the package may join it, as rollback joins adapter_io and model). Any other circle fails the test;
# the server has none.
ALLOWED_CIRCLES = [
    # adapter_io.load installs the adapter it read through model.add_adapter (and removes it again if the
    # weights do not fit), while the model's save_adapter/load_adapter methods call adapter_io; rollback
    # (all_or_nothing, used by both) re-applies the model's active setup through model._apply_active.
    ("adapterhub.library", {"adapterhub.library.adapter_io", "adapterhub.library.model"}),
]


def _allowed(circle: list[str]) -> bool:
    return any(
        heart <= set(circle) and all(m.startswith(package + ".") for m in circle)
        for package, heart in ALLOWED_CIRCLES
    )


def _layer(module: str) -> str | None:
    for layer in sorted(LAYERS, key=len, reverse=True):
        if module == layer or module.startswith(layer + "."):
            return layer
    return None


def test_the_import_graph_is_read_from_the_sources():
    graph = import_graph()
    assert "adapterhub.library.model" in graph and "adapterhub.server.app" in graph
    # a module-level import, a relative one inside a function, a "from . import module"
    assert "adapterhub.library.adapter_io" in graph["adapterhub.library.model"]
    assert "adapterhub.server.index" in graph["adapterhub.server.taxonomy"]
    assert "adapterhub.library.remote" in graph["adapterhub.library.saving"]


def test_imports_point_one_way_between_layers():
    wrong = []
    for module, imported in import_graph().items():
        layer = _layer(module)
        if layer is None:  # the programs on top may import anything
            continue
        for target in imported:
            target_layer = _layer(target)
            if target_layer != layer and target_layer not in LAYERS[layer]:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "imports against the layering:\n" + "\n".join(sorted(wrong))


def test_no_import_circles_but_the_documented_ones():
    found = circles(import_graph())
    assert all(_allowed(circle) for circle in found), "new import circles: " + repr(
        [circle for circle in found if not _allowed(circle)]
    )


def test_circle_finder_sees_a_circle_and_not_a_chain():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    # a known circle that another file of its package joins is still the known one; one across packages is not
    assert _allowed(
        ["adapterhub.library.adapter_io", "adapterhub.library.model", "adapterhub.library.rollback"]
    )
    assert not _allowed(
        ["adapterhub.client.push", "adapterhub.library.adapter_io", "adapterhub.library.model"]
    )
    assert not _allowed(["adapterhub.library.configs", "adapterhub.library.model"])


def _run(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


LOADED = """
import os, sys
def loaded(*prefixes):
    return sorted(m for m in sys.modules if m.startswith(prefixes))
"""


def test_importing_adapterhub_loads_neither_torch_nor_the_client_nor_sets_the_environment():
    code = (
        LOADED
        + """
import adapterhub
assert adapterhub.__version__
assert not loaded("torch", "transformers", "adapterhub.library", "adapterhub.client", "adapterhub.server"), loaded("torch", "adapterhub.")
init = adapterhub.init          # the library, on first use
assert callable(adapterhub.list_adapters)
assert "GOMP_SPINCOUNT" not in os.environ
import adapterhub.library
print(sorted(adapterhub.library.__all__) == sorted(adapterhub._LIBRARY_NAMES), loaded("adapterhub.server", "fastapi", "sqlalchemy"))
"""
    )
    assert _run(code) == "True []"


def test_each_layer_imports_alone():
    library = (
        LOADED
        + """
import adapterhub.library
print(loaded("adapterhub.client", "adapterhub.server", "fastapi", "sqlalchemy"), "GOMP_SPINCOUNT" in os.environ)
"""
    )
    assert _run(library) == "[] False"
    client = (
        LOADED
        + """
import adapterhub.client, adapterhub.client.cli
print(loaded("adapterhub.server", "fastapi", "sqlalchemy", "adapterhub.lifecycle", "adapterhub.train_cli"))
"""
    )
    assert _run(client) == "[]"
    server = (
        LOADED
        + """
import adapterhub.server.app, adapterhub.server.cli
print(loaded("adapterhub.client", "adapterhub.lifecycle", "adapterhub.train_cli"))
"""
    )
    assert _run(server) == "[]"


def test_the_command_line_limits_openmp_spinning_before_torch_loads():
    code = (
        LOADED
        + """
import adapterhub.cli
import torch
print(os.environ.get("GOMP_SPINCOUNT"))
"""
    )
    assert _run(code) == "10000"


def test_the_library_alone_names_the_missing_hub_client():
    code = """
import torch
from transformers import BertConfig, BertModel
from adapterhub.library import init, AdapterError
model = init(BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37, vocab_size=99)))
import tempfile
with tempfile.TemporaryDirectory() as folder:  # a local folder needs no client
    model.add_adapter("a", config="seq_bn")
    model.save_adapter(folder, "a")
    model.delete_adapter("a")
    print(model.load_adapter(folder), end=" ")
try:
    model.load_adapter("me/not-a-folder")
except AdapterError as error:
    print(type(error).__name__, "|", error)
"""
    out = _run(code)
    assert out.startswith(
        "a AdapterError | loading 'me/not-a-folder' (not a local folder) needs the hub client"
    ), out
    assert "import adapterhub.client" in out
