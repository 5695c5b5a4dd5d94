"""Reverse interop check: what adapterhub saves (flexible heads, Compacter, Fuse and Stack setups) loads in the
real `adapters` library and reproduces adapterhub's outputs; also a whole AdapterModel checkpoint (save_pretrained). Not a test: the peer needs transformers 4.57.

    .venv/bin/python scripts/peer_check_heads_setups.py save OUT            # adapterhub, transformers 5
    python3 -m venv /tmp/peervenv && /tmp/peervenv/bin/pip install /opt/wheels/torch-2.13.0+cpu-*.whl \\
        "transformers==4.57.6" "adapters==1.3.0"
    /tmp/peervenv/bin/python scripts/peer_check_heads_setups.py check OUT   # max abs diff per case

The base models and inputs are those of ../shared/fixtures/interop (eager attention, float32, CPU).
"""

import sys
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file, save_file

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "interop"
ARCHS = ("bert", "roberta")
COMPACTERS = {"compacter": "compacter[reduction_factor=4]", "compacterpp": "compacter++[reduction_factor=4]"}


def _batch(arch):
    expected = load_file(str(FIXTURES / arch / "base_expected.safetensors"))
    return {"input_ids": expected["input_ids"], "attention_mask": expected["attention_mask"]}


def _load(cls, arch, folder="base"):
    return cls.from_pretrained(
        FIXTURES / arch / folder, attn_implementation="eager"
    ).eval()  # absolute folder ok


def _perturb(model, wanted):
    with torch.no_grad():
        for key, param in model.named_parameters():
            if wanted(key):
                param.add_(torch.randn_like(param) * 0.05)


def _run(model, batch):
    with torch.no_grad():
        out = model(**batch)
    return out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state


def save(out: Path) -> None:
    import adapterhub

    torch.manual_seed(0)
    outputs = {}
    for arch in ARCHS:
        batch = _batch(arch)
        model = adapterhub.AdapterModel.from_pretrained(
            FIXTURES / arch / "base", attn_implementation="eager"
        ).eval()
        model.add_adapter("t", config="seq_bn")
        model.add_classification_head("t", num_labels=3)
        model.add_adapter("q", config="double_seq_bn")
        model.add_tagging_head("q", num_labels=4)
        _perturb(model, lambda k: ".adapters." in k or k.startswith("heads."))
        for name in ("t", "q"):
            model.set_active_adapters(name)
            outputs[f"{arch}/flex_{name}"] = _run(model, batch)
            for safe in (True, False):
                model.save_adapter(out / arch / f"flex_{name}_{safe}", name, use_safetensors=safe)
        for key, config in COMPACTERS.items():
            model = adapterhub.init(
                _load(transformers.AutoModelForSequenceClassification, arch, "base_seqcls")
            )
            model.add_adapter("c", config=config)
            _perturb(model, lambda k: ".adapters." in k or "shared_parameters" in k)
            model.set_active_adapters("c")
            outputs[f"{arch}/{key}"] = _run(model, batch)
            model.save_adapter(out / arch / key, "c")
        model = adapterhub.init(_load(transformers.AutoModel, arch))
        for name in "abc":
            model.add_adapter(name, config="seq_bn")
        model.add_adapter_fusion(["a", "b"])
        _perturb(model, lambda k: "adapter" in k)
        for tag, setup in (
            ("fuse", adapterhub.Fuse("a", "b")),
            ("stack_fuse", adapterhub.Stack("c", adapterhub.Fuse("a", "b"))),
        ):
            model.set_active_adapters(setup)
            outputs[f"{arch}/{tag}"] = _run(model, batch)
            model.save_adapter_setup(out / tag / arch, setup)
        model = adapterhub.AdapterModel.from_pretrained(
            FIXTURES / arch / "base", attn_implementation="eager"
        ).eval()
        for name in "ab":
            model.add_adapter(name, config="seq_bn")
        model.add_adapter_fusion(["a", "b"])
        model.add_classification_head("a,b", num_labels=3)
        _perturb(model, lambda k: "adapter" in k or k.startswith("heads."))
        model.set_active_adapters(adapterhub.Fuse("a", "b"))
        outputs[f"{arch}/checkpoint"] = _run(model, batch)
        model.save_pretrained(out / "checkpoint" / arch)
    save_file({k: v.contiguous() for k, v in outputs.items()}, str(out / "expected.safetensors"))


def check(out: Path) -> None:
    import adapters

    expected = load_file(str(out / "expected.safetensors"))
    for arch in ARCHS:
        batch = _batch(arch)
        for name in ("t", "q"):
            for safe in (True, False):
                model = _load(adapters.AutoAdapterModel, arch)
                model.set_active_adapters(
                    model.load_adapter(str(out / arch / f"flex_{name}_{safe}"), use_safetensors=safe)
                )
                diff = (_run(model, batch) - expected[f"{arch}/flex_{name}"]).abs().max().item()
                print(
                    f"{arch} {type(model).__name__} head {name} {'safetensors' if safe else 'bin'}: {diff:.1e}"
                )
        for key in COMPACTERS:
            model = _load(transformers.AutoModelForSequenceClassification, arch, "base_seqcls")
            adapters.init(model)
            model.set_active_adapters(model.load_adapter(str(out / arch / key), use_safetensors=True))
            print(f"{arch} {key}: {(_run(model, batch) - expected[f'{arch}/{key}']).abs().max().item():.1e}")
        for tag in ("fuse", "stack_fuse"):
            model = _load(transformers.AutoModel, arch)
            adapters.init(model)
            setup, _ = model.load_adapter_setup(str(out / tag / arch), set_active=True, use_safetensors=True)
            print(
                f"{arch} {setup}: {(_run(model, batch) - expected[f'{arch}/{tag}']).abs().max().item():.1e}"
            )
        model = _load(adapters.AutoAdapterModel, arch, out / "checkpoint" / arch)
        model.set_active_adapters(adapters.Fuse("a", "b"))
        diff = (_run(model, batch) - expected[f"{arch}/checkpoint"]).abs().max().item()
        print(f"{arch} whole {type(model).__name__} checkpoint, heads {list(model.heads)}: {diff:.1e}")


if __name__ == "__main__":
    {"save": save, "check": check}[sys.argv[1]](Path(sys.argv[2]))
