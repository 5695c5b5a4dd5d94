"""Differential check of LoRA and IA3 against the real `adapters` library (1.3.0), both ways, on tiny random
BERT, DistilBERT, GPT-2 (fused c_attn) and Llama models with padded batches. Not a test: the peer needs
transformers 4.57, so each side runs in its own environment and they exchange folders.

    python3 -m venv .venv-peer && .venv-peer/bin/pip install "torch==2.13.0" \\
        "transformers==4.57.6" "adapters==1.3.0"
    .venv-peer/bin/python scripts/peer_check_lora.py peer OUT     # base models + the peer's adapters, outputs
    .venv/bin/python scripts/peer_check_lora.py ours OUT             # load them here, compare; save ours
    .venv-peer/bin/python scripts/peer_check_lora.py peer-check OUT  # the peer loads ours, compares

Each compare step prints the max abs difference per case and exits non-zero above 1e-5.
"""

import sys
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file, save_file

TOLERANCE = 1e-5
_COMMON = dict(vocab_size=100, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
MODELS = {
    "bert": lambda: transformers.BertConfig(hidden_size=32, pad_token_id=0, **_COMMON),
    "distilbert": lambda: transformers.DistilBertConfig(
        vocab_size=100, dim=32, n_layers=2, n_heads=4, hidden_dim=37, pad_token_id=0
    ),
    "gpt2": lambda: transformers.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_positions=40),
    "llama": lambda: transformers.LlamaConfig(
        hidden_size=32, num_key_value_heads=2, pad_token_id=0, **_COMMON
    ),
}
#: name -> (config class name, options), the same for both libraries
CONFIGS = {
    "lora_all": (
        "LoRAConfig",
        dict(r=4, alpha=8, attn_matrices=["q", "k", "v"], intermediate_lora=True, output_lora=True),
    ),
    "lora_qv": ("LoRAConfig", dict(r=4, alpha=8)),
    "lora_kv_out": (
        "LoRAConfig",
        dict(r=2, alpha=3, attn_matrices=["k", "v"], output_lora=True, leave_out=[0]),
    ),
    "ia3": ("IA3Config", dict()),
    "ia3_q_out": ("IA3Config", dict(attn_matrices=["q"], intermediate_lora=False, output_lora=True)),
}


def _batch():
    ids = torch.randint(3, 100, (2, 7), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, -2:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _output(model, batch):
    with torch.no_grad():
        return model(**batch).last_hidden_state * batch["attention_mask"][..., None]  # valid positions


def _base(out: Path, arch: str):
    return transformers.AutoModel.from_pretrained(out / arch / "base", attn_implementation="eager").eval()


def _perturb(model, name, seed=5):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, param in model.named_parameters():
            if f".{name}." in key:
                param.add_(torch.randn(param.shape, generator=generator) * 0.1)


def _save_case(model, name, folder: Path, batch) -> None:
    model.set_active_adapters(name)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_adapter(str(folder), name)
    save_file({"output": _output(model, batch).contiguous()}, str(folder / "expected.safetensors"))
    model.set_active_adapters(None)


def _compare(model, name, folder: Path, batch, label: str, **options) -> bool:
    model.load_adapter(str(folder), **options)
    model.set_active_adapters(name)
    diff = (
        (_output(model, batch) - load_file(str(folder / "expected.safetensors"))["output"]).abs().max().item()
    )
    print(f"{label:40s} {diff:.1e}")
    return diff <= TOLERANCE


def peer(out: Path) -> None:
    import adapters

    for arch, make in MODELS.items():
        config = make()
        config._attn_implementation = "eager"
        torch.manual_seed(0)
        model = transformers.AutoModel.from_config(config)
        with torch.no_grad():
            for param in model.parameters():
                param.add_(torch.randn_like(param) * 0.02)
        model.save_pretrained(out / arch / "base")
        model = _base(out, arch)
        adapters.init(model)
        for name, (cls, options) in CONFIGS.items():
            model.add_adapter(name, config=getattr(adapters, cls)(**options))
            _perturb(model, name)
            _save_case(model, name, out / arch / "peer" / name, _batch())


def ours(out: Path) -> bool:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import adapterhub

    ok = True
    for arch in MODELS:
        for name in CONFIGS:
            model = adapterhub.init(_base(out, arch))
            ok &= _compare(model, name, out / arch / "peer" / name, _batch(), f"{arch}/{name}: peer -> ours")
        model = adapterhub.init(_base(out, arch))
        for name, (cls, options) in CONFIGS.items():
            model.add_adapter(name, config=getattr(adapterhub, cls)(**options))
            _perturb(model, name, seed=6)
            _save_case(model, name, out / arch / "ours" / name, _batch())
    return ok


def peer_check(out: Path) -> bool:
    import adapters

    ok = True
    for arch in MODELS:
        for name in CONFIGS:
            model = _base(out, arch)
            adapters.init(model)
            ok &= _compare(
                model,
                name,
                out / arch / "ours" / name,
                _batch(),
                f"{arch}/{name}: ours -> peer",
                use_safetensors=True,
            )
    return ok


if __name__ == "__main__":
    step, folder = sys.argv[1], Path(sys.argv[2])
    result = {"peer": peer, "ours": ours, "peer-check": peer_check}[step](folder)
    sys.exit(0 if result is None or result else 1)
