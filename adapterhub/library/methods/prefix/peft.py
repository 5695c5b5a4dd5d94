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
