"""PEFT's PREFIX_TUNING files: ``prompt_embeddings`` ``[num_virtual_tokens, layers * 2 * heads * head_dim]``,
the flat prefixes in the layout of the AdapterHub format, with positions shifted by the prefix."""

from __future__ import annotations

from ...errors import AdapterConfigError
from .config import PrefixTuningConfig
from .layers import HOLDER, LOCATION


def from_peft(cls, peft_config, weights, host):
    if peft_config.get("prefix_projection"):
        raise AdapterConfigError("PEFT prefix tuning with prefix_projection=true is not supported")
    tables = [k for k in weights if k.rsplit(".", 1)[-1] == "prompt_embeddings"]
    if len(tables) != 1 or len(weights) != 1:
        raise AdapterConfigError(
            f"a PEFT prefix tuning file holds one 'prompt_embeddings' tensor, not {sorted(weights)}"
        )
    table = weights[tables[0]]
    heads, head_dim = cls(host).dims()
    layers = len(host.layers)
    length = peft_config.get("num_virtual_tokens")
    expected = (length, layers * 2 * heads * head_dim)
    if tuple(table.shape) != expected or peft_config.get("num_layers", layers) != layers:
        raise AdapterConfigError(
            f"prompt_embeddings of shape {tuple(table.shape)} (num_layers {peft_config.get('num_layers')}) does "
            f"not fit this model: expected {expected} for {layers} layers"
        )
    config = PrefixTuningConfig(flat=True, prefix_length=length, shift_positions=True)
    key = f"{host.prefix}{HOLDER}.prefix_tunings.default.{LOCATION}.control_trans"
    return config, {key: table.reshape(-1)}


def to_peft(method, name: str):
    config = method.host.configs[name]
    if config.use_gating:
        raise AdapterConfigError(f"{name!r} has gated prefixes (use_gating), which PEFT has no form for")
    if not config.shift_positions:
        raise AdapterConfigError(
            f"prefix tuning adapter {name!r} keeps the sequence's positions (the AdapterHub form); PEFT shifts them "
            "by the prefix length, so its PEFT file would compute differently. Only prefixes read from PEFT files "
            "(shift_positions=True) are saved in the PEFT format"
        )
    if config.leave_out:
        raise AdapterConfigError(
            "PEFT prefix tuning has a prefix in every layer; this adapter leaves some out"
        )
    model = method.host.model
    heads, head_dim = method.dims()
    peft_config = {
        "peft_type": "PREFIX_TUNING",
        "num_virtual_tokens": config.prefix_length,
        "token_dim": method.host.hidden_size,
        "num_layers": len(method.host.layers),
        "num_attention_heads": model.config.num_attention_heads,
        "encoder_hidden_size": method.host.hidden_size,
        "prefix_projection": False,
        "num_transformer_submodules": 1,
    }
    if model is method.host.base_model:
        peft_config["task_type"] = "FEATURE_EXTRACTION"
    elif getattr(model, "can_generate", lambda: False)():  # GPT2LMHeadModel, LlamaForCausalLM, ...
        peft_config["task_type"] = "CAUSAL_LM"
    table = method.prefix(name).flat().detach().reshape(config.prefix_length, -1)
    return peft_config, {"prompt_embeddings": table.clone()}
