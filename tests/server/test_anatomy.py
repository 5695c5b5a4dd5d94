"""The adapter anatomy drawing (adapterhub/server/anatomy.py): its parts match the configs that the `adapters`
library (1.3) and PEFT (0.21) wrote for the interop fixtures, and what the page shows of the base model."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from adapterhub.server.anatomy import PRE_LN_MODEL_TYPES, Sizes, describe, module_roles, render_svg

try:
    from test_index import INTEROP
except ImportError:  # tests/ as a package
    from tests.server.test_index import INTEROP

pytestmark = pytest.mark.skipif(not INTEROP.is_dir(), reason="../shared fixtures missing")
SVG = "{http://www.w3.org/2000/svg}"


def fixture_config(rel: str) -> dict:
    folder = INTEROP / "bert" / rel
    sub = folder / "safetensors" if (folder / "safetensors").is_dir() else folder
    cfg = json.loads(
        (
            (sub if (sub / "adapter_config.json").is_file() else folder / "bin") / "adapter_config.json"
        ).read_text()
    )
    return cfg.get("config", cfg) if "peft_type" not in cfg else cfg


def draw(config: dict, **kw) -> ET.Element:
    kw.setdefault("model_type", "bert")
    kw.setdefault("hidden_size", 768)
    kw.setdefault("num_layers", 12)
    sizes = kw.pop("sizes", None)
    return ET.fromstring(str(render_svg(describe(config, **kw), sizes)))


def parts(root: ET.Element, name: str) -> list[ET.Element]:
    return [g for g in root.iter() if g.get("data-part") == name]


def texts(el: ET.Element) -> str:
    return " ".join(t.text or "" for t in el.iter(SVG + "text"))


def hit_matrices(root: ET.Element) -> dict[str, str]:
    return {
        g.get("data-part")[len("matrix-") :]: texts(g)
        for g in root.iter()
        if (g.get("data-part") or "").startswith("matrix-") and "hit" in g.get("class", "")
    }


def test_seq_bn():
    root = draw(fixture_config("adapters/seq_bn"))
    assert parts(root, "bottleneck-attention") == []
    (bn,) = parts(root, "bottleneck-ffn")
    assert bn.get("data-placement") == "sequential" and bn.get("data-reduction") == "16"
    assert bn.get("data-non-linearity") == "relu" and bn.get("data-size") == "48"  # 768 / 16
    assert "768 → 48 → 768" in texts(bn)
    # post-LN encoder: add & norm after each sub-layer, residual around each
    assert texts(parts(root, "add-ffn")[0]) == "Add & LayerNorm" and parts(root, "norm-ffn") == []
    assert len(parts(root, "residual-attention")) == len(parts(root, "residual-ffn")) == 1
    assert parts(root, "invertible") == [] and hit_matrices(root) == {}


def test_double_seq_bn_pre_ln_and_leave_out():
    cfg = {**fixture_config("adapters/double_seq_bn"), "leave_out": [0, 5, 99]}
    root = draw(cfg, model_type="llama", hidden_size=64, num_layers=6)
    att, ffn = parts(root, "bottleneck-attention"), parts(root, "bottleneck-ffn")
    assert len(att) == len(ffn) == 1
    assert att[0].get("data-non-linearity") == "swish" and att[0].get("data-size") == "4"
    # pre-LN decoder: a LayerNorm before each sub-layer, a plain add after it
    assert (
        texts(parts(root, "norm-attention")[0]) == "LayerNorm" and texts(parts(root, "add-ffn")[0]) == "Add"
    )
    (strip,) = parts(root, "layers")
    layers = {int(g.get("data-layer")): g.get("class") for g in strip if g.get("data-layer") is not None}
    assert strip.get("data-count") == "6" and len(layers) == 6
    assert [i for i, c in sorted(layers.items()) if "off" in c] == [0, 5]  # 99 is no layer of this model


def test_par_bn():
    root = draw(fixture_config("adapters/par_bn"))
    (bn,) = parts(root, "bottleneck-ffn")
    assert bn.get("data-placement") == "parallel" and bn.get("data-reduction") == "2"
    assert "scale 4" in texts(bn) and bn.get("data-size") == "384"


def test_invertible_adapter():
    root = draw(fixture_config("adapters/seq_bn_inv"))
    (inv,) = parts(root, "invertible")
    assert inv.get("data-block") == "nice" and inv.get("data-reduction") == "2"
    assert "Invertible adapter (nice)" in texts(inv) and len(parts(root, "embeddings")) == 1
    assert len(parts(root, "bottleneck-ffn")) == 1


def test_compacter():
    root = draw(fixture_config("adapters/compacter-seqcls"))
    for site in ("attention", "ffn"):
        (bn,) = parts(root, f"bottleneck-{site}")
        assert bn.get("data-phm-dim") == "4" and bn.get("data-reduction") == "4"
        assert "Compacter" in texts(bn) and "PHM n=4, rank 1" in texts(bn) and "gelu" in texts(bn)


def test_lora_adapters_and_peft():
    root = draw(fixture_config("adapters/lora"))
    assert hit_matrices(root) == {"q": "Q r=8", "v": "V r=8"}
    assert parts(root, "bottleneck-ffn") == [] and parts(root, "bottleneck-attention") == []
    # PEFT, module names with layer numbers: every linear of layers 0 and 1, the pooler outside the layers
    root = draw(fixture_config("peft/lora_all_linear"), num_layers=4)
    assert set(hit_matrices(root)) == {"q", "k", "v", "o", "ffn_in", "ffn_out"}
    assert "pooler.dense" in texts(parts(root, "outside")[0])
    layers = [g for g in parts(root, "layers")[0] if g.get("data-layer") is not None]
    assert [g.get("data-layer") for g in layers if "off" in g.get("class")] == ["2", "3"]
    root = draw(fixture_config("peft/lora_qv"))
    assert hit_matrices(root) == {"q": "Q r=8", "v": "V r=8"}
    # IA3: scaling vectors on K, V and the feed-forward output (PEFT) / input (adapters)
    assert set(hit_matrices(draw(fixture_config("peft/ia3")))) == {"k", "v", "ffn_out"}
    assert set(hit_matrices(draw(fixture_config("adapters/ia3")))) == {"k", "v", "ffn_in"}


def test_prefix_tuning():
    (prefix,) = parts(draw(fixture_config("adapters/prefix_tuning")), "prefix")
    assert prefix.get("data-length") == "30" and "via MLP 512" in texts(prefix)
    (prefix,) = parts(draw(fixture_config("peft/prefix_tuning")), "prefix")
    assert prefix.get("data-length") == "8" and "MLP" not in texts(prefix)


def test_sizes_and_hostile_config_text_is_escaped():
    cfg = {**fixture_config("adapters/seq_bn"), "non_linearity": '<script>"x"</script>'}
    root = draw(
        cfg,
        sizes=Sizes(
            adapter_params=1_000, head_params=30, adapter_bytes=4_500, base_params=200_000, base_bytes=800_000
        ),
    )
    (adapter,) = parts(root, "size-adapter")
    assert texts(adapter) == "Adapter: 1,000 parameters (+ 30 in the head) · 4.5 kB of weights"
    assert (
        texts(parts(root, "size-base")[0])
        == "Base model: 200,000 parameters · 800.0 kB · the adapter adds 0.50%"
    )
    assert parts(root, "bottleneck-ffn")[0].get("data-non-linearity") == '<script>"x"</script>'  # as text
    assert "<script>" not in str(render_svg(describe(cfg)))


def test_module_roles_never_run_a_regex():
    assert module_roles(r".*\.(q_proj|v_proj)$") == ({"q", "v"}, [])
    assert module_roles("(a+)+$") == (set(), [])  # would backtrack for ever if it were run
    assert module_roles(["dense"])[0] == {"o", "ffn_in", "ffn_out"}
    assert module_roles(["attention.output.dense", "classifier"]) == ({"o"}, ["classifier"])


def test_pre_ln_model_types_match_the_library():
    from adapterhub.library.architectures import _ARCHITECTURES

    pre = {t for t, a in _ARCHITECTURES.items() if a.sites["mh_adapter"].norm is None}
    assert pre == set(PRE_LN_MODEL_TYPES)
