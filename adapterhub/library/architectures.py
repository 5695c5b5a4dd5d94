"""Where adapters go in each supported model family: small declarative maps, no modeling code.

A transformer layer has two *sites* for bottleneck adapters: after the attention block (``mh_adapter``) and
after the feed-forward block (``output_adapter``). A site is described by module paths, relative to one layer:

* ``output``: the module whose output is the sub-layer's result ``h`` (first element if it returns a tuple);
* ``residual`` / ``residual_arg``: a module that receives the residual stream ``r`` as its input
  ``residual_arg`` (a position and a keyword name);
* ``norm``: in post-LN models (BERT family) the LayerNorm that the layer applies to ``h + r``; ``None`` in
  pre-LN models (GPT-2, Llama), which add ``r + h`` without a norm;
* ``container``: the module that holds the ``adapters`` dict (created empty if the model has none there);
  it fixes the saved weight names, which follow the AdapterHub format.

Adding a model family is one :func:`register_architecture` call: see the README section "Adding a model".
"""

from __future__ import annotations

import dataclasses

from torch import nn

from .errors import UnsupportedModelError


@dataclasses.dataclass(frozen=True)
class Site:
    output: str
    residual: str
    residual_arg: tuple[int, str]
    norm: str | None
    container: str


@dataclasses.dataclass(frozen=True)
class Architecture:
    layers: str  # path from the base model to the list of layers
    # module whose output is the embedding output that the first layer reads (invertible adapters transform it):
    # after position embeddings are added where the model adds them outside its embeddings module (GPT-2)
    embeddings: str
    sites: dict[str, Site]
    # Linear layers by role, for methods that wrap weight matrices (LoRA, IA3): role -> path in a layer
    linears: dict[str, str] = dataclasses.field(default_factory=dict)
    # The self-attention module of a layer, for methods that add keys and values (prefix tuning): its forward
    # takes ``attention_mask`` and ``cache`` keywords and stores this call's keys / values with ``cache.update``
    # (after rotary embeddings); "" where the family has none
    attention: str = ""
    # The module whose output is the embedded sequence that prompt tuning puts its prompt into (after position
    # embeddings and norms, as the AdapterHub format does); "" where not supported
    prompt: str = ""
    # The `adapters` library runs some families through its plugin interface, which applies the active invertible
    # adapter's inverse before the model's own output embeddings (a standard Transformers LM head); its built-in
    # families (and every other family here) apply it only in the flexible LM heads. Saved adapters of such a
    # family only give the same outputs if we do the same.
    inverse_before_output_embeddings: bool = False
    # The linear roles (keys of ``linears``) that LoRA's and IA3's feed-forward options wrap. The `adapters` library
    # puts them on other modules in some families, and saved weight names only fit if we do the same.
    ffn_lora_roles: dict[str, str] = dataclasses.field(
        default_factory=lambda: {"intermediate_lora": "intermediate", "output_lora": "output"}
    )


_ARCHITECTURES: dict[str, Architecture] = {}
_FFN_LORA_OPTIONS = ("intermediate_lora", "output_lora")


def register_architecture(model_types: str | list[str], architecture: Architecture) -> None:
    if set(architecture.ffn_lora_roles) != set(_FFN_LORA_OPTIONS):
        raise ValueError(
            f"ffn_lora_roles maps {sorted(architecture.ffn_lora_roles)}: it must map exactly "
            f"{list(_FFN_LORA_OPTIONS)} to linear roles"
        )
    for model_type in [model_types] if isinstance(model_types, str) else model_types:
        _ARCHITECTURES[model_type] = architecture


def supported_model_types() -> list[str]:
    return sorted(_ARCHITECTURES)


def architecture_of(model: nn.Module) -> Architecture:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in _ARCHITECTURES:
        raise UnsupportedModelError(
            f"model type {model_type!r} ({type(model).__name__}) has no adapter description; supported: "
            f"{', '.join(supported_model_types())}. Add one with adapterhub.register_architecture()."
        )
    return _ARCHITECTURES[model_type]


# Post-LN encoders: BertSelfOutput / BertOutput compute LayerNorm(dropout(dense(x)) + input_tensor).
_BERT_LIKE = Architecture(
    layers="encoder.layer",
    embeddings="embeddings",
    sites={
        "mh_adapter": Site(
            "attention.output.dropout",
            "attention.output",
            (1, "input_tensor"),
            "attention.output.LayerNorm",
            "attention.output",
        ),
        "output_adapter": Site("output.dropout", "output", (1, "input_tensor"), "output.LayerNorm", "output"),
    },
    linears={
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "o": "attention.output.dense",
        "intermediate": "intermediate.dense",
        "output": "output.dense",
    },
    attention="attention.self",
    prompt="embeddings",
)
register_architecture(["bert", "roberta", "xlm-roberta", "camembert", "electra"], _BERT_LIKE)

register_architecture(
    "distilbert",
    Architecture(
        layers="transformer.layer",
        embeddings="embeddings",
        sites={
            "mh_adapter": Site(
                "attention", "attention", (0, "hidden_states"), "sa_layer_norm", "attention_adapters"
            ),
            "output_adapter": Site("ffn", "ffn", (0, "input"), "output_layer_norm", "output_adapters"),
        },
        linears={
            "q": "attention.q_lin",
            "k": "attention.k_lin",
            "v": "attention.v_lin",
            "o": "attention.out_lin",
            "intermediate": "ffn.lin1",
            "output": "ffn.lin2",
        },
    ),
)

# Pre-LN decoders: h = attn(ln_1(r)); r + h. The residual is the input of the pre-norm.
register_architecture(
    "gpt2",
    Architecture(
        layers="h",
        embeddings="drop",  # dropout(wte + wpe)
        sites={
            "mh_adapter": Site("attn", "ln_1", (0, "input"), None, "attention_adapters"),
            "output_adapter": Site("mlp", "ln_2", (0, "input"), None, "output_adapters"),
        },
        linears={
            "qkv": "attn.c_attn",
            "o": "attn.c_proj",
            "intermediate": "mlp.c_fc",
            "output": "mlp.c_proj",
        },
        attention="attn",
    ),
)

_LLAMA_LIKE = Architecture(
    layers="layers",
    embeddings="embed_tokens",
    sites={
        "mh_adapter": Site("self_attn", "input_layernorm", (0, "hidden_states"), None, "attention_adapters"),
        "output_adapter": Site(
            "mlp", "post_attention_layernorm", (0, "hidden_states"), None, "output_adapters"
        ),
    },
    linears={
        "q": "self_attn.q_proj",
        "k": "self_attn.k_proj",
        "v": "self_attn.v_proj",
        "o": "self_attn.o_proj",
        "gate": "mlp.gate_proj",
        "intermediate": "mlp.up_proj",
        "output": "mlp.down_proj",
    },
    attention="self_attn",
)
# The `adapters` library's built-in Llama and Mistral put LoRA's intermediate_lora on mlp.down_proj and output_lora
# on mlp.up_proj.
register_architecture(
    ["llama", "mistral"],
    dataclasses.replace(
        _LLAMA_LIKE, ffn_lora_roles={"intermediate_lora": "output", "output_lora": "intermediate"}
    ),
)
# Qwen2 is one of the `adapters` library's plugin-interface families: the same layout, the inverse of the invertible
# adapter before a standard LM head, and (LoRA, IA3) intermediate_lora on mlp.up_proj, output_lora on mlp.down_proj.
register_architecture("qwen2", dataclasses.replace(_LLAMA_LIKE, inverse_before_output_embeddings=True))
