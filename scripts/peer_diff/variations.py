"""The variations the harness runs: plain data, read by both sides.

A case is a dict:

* ``arch``: a key of ``common.CONFIGS``; ``kind``: ``base``, ``seqcls``, ``mlm``, ``clm`` (Transformers models given
  the adapter API) or ``flex`` (adapterhub ``AdapterModel`` / the peer's ``AutoAdapterModel``);
* ``adapters``: ``[[name, config string], ...]`` (the config string syntax is the same in both libraries);
* ``fusions``: ``[[[adapter names], fusion config], ...]``; ``heads``: ``[[name, head type, options], ...]`` (flex);
* ``train_steps`` (optional): forward passes in train mode before the measured one;
* ``padding``: the side of the padded batch's padding, ``right`` (the default) or ``left``;
* ``setup``: the active setup, a name or a nested list ``["Stack", "a", ["Fuse", "b", "c"]]``;
* ``save``: ``adapter`` (save_adapter of the first adapter, with its head), ``setup`` (save_adapter_setup) or
  ``checkpoint`` (save_pretrained of a flex model); ``format``: ``safetensors`` or ``bin``.

A new method plugs in as a new list of config strings (``METHODS``) and, where it composes, new setups.
"""

from __future__ import annotations

from common import CONFIGS, DECODERS

ARCHS = list(CONFIGS)
#: architectures with a flexible-head model (``<Arch>AdapterModel``) in the peer
FLEX_ARCHS = ["bert", "roberta", "xlm-roberta", "electra", "distilbert", "gpt2", "llama", "mistral"]

_RF = "reduction_factor=4"
METHODS = {
    "bottleneck": [
        f"seq_bn[{_RF}]",
        f"double_seq_bn[{_RF}]",
        f"par_bn[{_RF}]",
        f"scaled_par_bn[{_RF}]",
        f"seq_bn_inv[{_RF}]",
        f"double_seq_bn_inv[{_RF}]",
        f"seq_bn_inv[{_RF},inv_adapter='glow']",
        f"seq_bn[{_RF},ln_before=True,ln_after=True]",
        f"seq_bn[{_RF},use_gating=True]",
        f"seq_bn[{_RF},residual_before_ln=False]",
        f"seq_bn[{_RF},residual_before_ln='post_add']",
        f"seq_bn[{_RF},original_ln_after=False]",
        f"double_seq_bn[{_RF},adapter_residual_before_ln=True,ln_after=True]",
        f"seq_bn[{_RF},scaling='channel']",
        f"par_bn[{_RF},scaling=0.5]",
        f"seq_bn[{_RF},non_linearity='gelu']",
        f"double_seq_bn[{_RF},non_linearity='tanh',leave_out=[0]]",
        f"seq_bn[{_RF},mh_adapter=True,output_adapter=False]",
    ],
    "compacter": [
        "compacter[reduction_factor=4]",
        "compacter++[reduction_factor=4]",
        "compacter[reduction_factor=4,shared_W_phm=True,factorized_phm_W=False]",
        "compacter++[reduction_factor=4,factorized_phm_rule=True,phm_rank=2]",
        "compacter++[reduction_factor=4,shared_phm_rule=False,phm_c_init='uniform']",
    ],
    "lora": [
        "lora[r=4,alpha=8]",
        "lora[r=4,alpha=16,attn_matrices=['q','k','v'],intermediate_lora=True,output_lora=True]",
        "ia3",
        "ia3[intermediate_lora=False,attn_matrices=['q','v']]",
    ],
    "reft": [
        "loreft[suffix_positions=2,r=2]",
        "noreft[prefix_positions=2,suffix_positions=3,r=3,tied_weights=True]",
        "direft[suffix_positions=1,r=2,non_linearity='tanh',layers=[1]]",
        "loreft[prefix_positions=4,suffix_positions=4,r=2,layers=[0]]",  # they overlap on the 4-token row
    ],
}
#: gated methods and config unions (prefix tuning inside, so not on DistilBERT, whose attention takes no cache;
#: the peer cannot save prefix tuning in safetensors, so these run with .bin files and a few safetensors cases)
GATED = {
    "gated": [
        "lora[r=4,alpha=8,use_gating=True]",
        "lora[r=4,attn_matrices=['q','k','v'],intermediate_lora=True,output_lora=True,use_gating=True]",
        "prefix_tuning[prefix_length=4,bottleneck_size=16,use_gating=True]",
        "prefix_tuning_flat[prefix_length=3,use_gating=True,shared_gating=False]",
        f"seq_bn[{_RF},use_gating=True]",
    ],
    "union": [
        "mam",
        "unipelt",
        f"prefix_tuning[prefix_length=3,bottleneck_size=8]|lora[r=4,use_gating=True]|par_bn[{_RF}]",
        f"seq_bn[{_RF},mh_adapter=True,output_adapter=False]|double_seq_bn[{_RF},mh_adapter=False]|lora[r=2]",
    ],
}
GATED_ARCHS = ["bert", "roberta", "electra", "gpt2", "llama", "mistral", "qwen2"]
#: every option of an AdapterFusion config (the ``dynamic`` preset), for configs given as dicts
_DYNAMIC = {
    "key": True,
    "query": True,
    "value": True,
    "query_before_ln": False,
    "regularization": True,
    "residual_before": False,
    "temperature": False,
    "value_before_softmax": True,
    "value_initialized": True,
    "dropout_prob": None,
}
#: multi-adapter setups (adapters, fusions, setup), run on a bare base model and saved with save_adapter_setup
SETUPS = {
    "stack": ([["a", f"seq_bn_inv[{_RF}]"], ["b", f"double_seq_bn[{_RF}]"]], [], ["Stack", "a", "b"]),
    "fuse": (
        [["a", f"seq_bn[{_RF}]"], ["b", f"seq_bn[{_RF}]"]],
        [[["a", "b"], "dynamic"]],
        ["Fuse", "a", "b"],
    ),
    "fuse-static": (
        [["a", f"double_seq_bn[{_RF}]"], ["b", f"double_seq_bn[{_RF}]"]],
        [[["a", "b"], "static"]],
        ["Fuse", "a", "b"],
    ),
    "fuse-options": (
        [["a", f"seq_bn[{_RF}]"], ["b", f"seq_bn[{_RF}]"]],
        [[["a", "b"], {**_DYNAMIC, "query_before_ln": True, "residual_before": True}]],
        ["Fuse", "a", "b"],
    ),
    "fuse-value-after": (
        [["a", f"seq_bn[{_RF},non_linearity='tanh']"], ["b", f"seq_bn[{_RF}]"]],
        [[["a", "b"], {**_DYNAMIC, "value_before_softmax": False, "key": False}]],
        ["Fuse", "a", "b"],
    ),
    "fuse-temperature": (
        [["a", f"seq_bn[{_RF}]"], ["b", f"seq_bn[{_RF}]"]],
        [[["a", "b"], {**_DYNAMIC, "temperature": True}]],
        ["Fuse", "a", "b"],
    ),
    "stack-fuse": (
        [["a", f"seq_bn[{_RF}]"], ["b", f"seq_bn[{_RF}]"], ["c", f"seq_bn_inv[{_RF}]"]],
        [[["a", "b"], "dynamic"]],
        ["Stack", "c", ["Fuse", "a", "b"]],
    ),
    "fuse-stack": (
        [["a", f"seq_bn[{_RF},non_linearity='tanh']"], ["b", f"seq_bn[{_RF}]"], ["c", f"seq_bn[{_RF}]"]],
        [[["b", "c"], "dynamic"]],
        ["Fuse", ["Stack", "a", "b"], "c"],
    ),
    "stack-reft": (
        [["a", "loreft[suffix_positions=1,r=2]"], ["b", f"seq_bn[{_RF}]"]],
        [],
        ["Stack", "a", "b"],
    ),
}
#: flexible heads: (head type, options, adapter config)
HEADS = {
    "classification": ("classification", {"num_labels": 3}, f"seq_bn_inv[{_RF}]"),
    "multilabel": ("classification", {"num_labels": 3, "multilabel": True}, f"par_bn[{_RF}]"),
    "tagging": ("tagging", {"num_labels": 5}, f"double_seq_bn[{_RF}]"),
    "masked_lm": ("masked_lm", {}, f"seq_bn_inv[{_RF}]"),  # encoders only
    "causal_lm": ("causal_lm", {}, f"double_seq_bn_inv[{_RF}]"),  # decoders only
}


#: documented differences (case id and direction, as a regular expression -> why): reported, not failures
KNOWN = {
    r"^compacter\d+-[^-]+(-[^-]+)?-base(-bin)? peer->ours": (
        "the peer does not save Compacter's shared PHM rule from a bare base model "
        "(shared_parameters.NAME.phm_rule), so its own files do not reproduce its outputs; adapterhub refuses "
        "the file (missing keys) instead of loading a random rule"
    ),
    r"^reft2-": (
        "the peer keeps subtract_projection as a class attribute, not a config field: its files do not hold it, and "
        "its loading rebuilds the config from the fields, so a DiReFT adapter loaded there (from its own file or ours, "
        "which writes subtract_projection: false) runs with subtract_projection=True; adapterhub reads the peer's "
        "file as the peer reads it (with subtract_projection false the two compute the same)"
    ),
}


def _case(
    arch, kind, adapters, setup, save="adapter", fmt="safetensors", fusions=(), heads=(), padding="right"
) -> dict:
    return {
        "padding": padding,
        "arch": arch,
        "kind": kind,
        "adapters": [list(a) for a in adapters],
        "fusions": [list(f) for f in fusions],
        "heads": [list(h) for h in heads],
        "setup": setup,
        "save": save,
        "format": fmt,
    }


def _all() -> dict[str, dict]:
    cases = {}
    for method, configs in METHODS.items():
        for i, config in enumerate(configs):
            for arch in ARCHS:
                cases[f"{method}{i}-{arch}-base"] = _case(arch, "base", [["a", config]], "a")
            for arch in ("bert", "gpt2"):
                cases[f"{method}{i}-{arch}-base-bin"] = _case(arch, "base", [["a", config]], "a", fmt="bin")
    for group, configs in GATED.items():
        for i, config in enumerate(configs):
            for arch in GATED_ARCHS:
                cases[f"{group}{i}-{arch}-base-bin"] = _case(arch, "base", [["a", config]], "a", fmt="bin")
            for arch in ("bert", "llama"):
                cases[f"{group}{i}-{arch}-seqcls-bin"] = _case(
                    arch, "seqcls", [["a", config]], "a", fmt="bin"
                )
            for arch in ("bert", "gpt2"):
                cases[f"{group}{i}-{arch}-base"] = _case(arch, "base", [["a", config]], "a")
    for i, config in enumerate(METHODS["reft"]):  # ReFT finds the first and last tokens past the padding
        for arch in ("bert", "gpt2", "llama"):
            cases[f"reft{i}-{arch}-base-left"] = _case(arch, "base", [["a", config]], "a", padding="left")
        cases[f"reft{i}-roberta-seqcls-bin"] = _case("roberta", "seqcls", [["a", config]], "a", fmt="bin")
    for arch in ARCHS:
        lm = "clm" if arch in DECODERS else "mlm"
        for j, config in enumerate(METHODS["bottleneck"][:6]):
            fmt = "bin" if j % 2 else "safetensors"
            cases[f"bottleneck{j}-{arch}-seqcls-{fmt}"] = _case(arch, "seqcls", [["a", config]], "a", fmt=fmt)
            cases[f"bottleneck{j}-{arch}-{lm}-{fmt}"] = _case(arch, lm, [["a", config]], "a", fmt=fmt)
    for arch in FLEX_ARCHS:
        for head, (head_type, options, config) in HEADS.items():
            if head == ("masked_lm" if arch in DECODERS else "causal_lm"):
                continue
            for fmt in ("safetensors", "bin"):
                cases[f"flex-{head}-{arch}-{fmt}"] = _case(
                    arch, "flex", [["a", config]], "a", fmt=fmt, heads=[["a", head_type, options]]
                )
        for fmt in ("safetensors", "bin"):
            cases[f"checkpoint-{arch}-{fmt}"] = _case(
                arch,
                "flex",
                [["a", f"seq_bn_inv[{_RF}]"], ["b", f"double_seq_bn[{_RF}]"]],
                ["Stack", "a", "b"],
                save="checkpoint",
                fmt=fmt,
                heads=[["b", "classification", {"num_labels": 3}]],
            )
    for arch in ("bert", "roberta", "distilbert", "gpt2", "llama"):
        for name, (adapters, fusions, setup) in SETUPS.items():
            for fmt in ("safetensors", "bin"):
                case = _case(arch, "base", adapters, setup, save="setup", fmt=fmt, fusions=fusions)
                if "temperature" in name:  # the temperature falls with each training step: 50 -> 49
                    case["train_steps"] = 20
                cases[f"setup-{name}-{arch}-{fmt}"] = case
    return cases


#: the subset that the test suite runs (tests/test_peer_diff.py): every save mode, format, method and kind once
CI = [
    "bottleneck0-bert-base",
    "bottleneck1-gpt2-base-bin",
    "bottleneck2-llama-base",
    "bottleneck5-gpt2-base",
    "bottleneck12-qwen2-base",
    "compacter0-bert-base",
    "lora1-gpt2-base",
    "bottleneck4-gpt2-clm-safetensors",
    "bottleneck5-bert-mlm-bin",
    "bottleneck1-electra-seqcls-bin",
    "bottleneck0-gpt2-seqcls-safetensors",
    "flex-classification-bert-bin",
    "flex-tagging-gpt2-safetensors",
    "flex-masked_lm-bert-safetensors",
    "flex-causal_lm-llama-bin",
    "checkpoint-roberta-safetensors",
    "setup-fuse-bert-safetensors",
    "setup-fuse-stack-gpt2-bin",
    "setup-stack-fuse-llama-safetensors",
    "setup-fuse-options-distilbert-safetensors",
    "setup-fuse-temperature-roberta-bin",
    "gated1-gpt2-base-bin",
    "gated3-llama-base-bin",
    "union0-bert-base-bin",
    "union1-gpt2-base-bin",
    "union1-llama-seqcls-bin",
    "gated0-bert-base",
    "union3-roberta-base-bin",
    "reft0-bert-base",
    "reft1-gpt2-base-bin",
    "reft3-llama-base-left",
    "setup-stack-reft-distilbert-safetensors",
]


def cases(subset: str = "full") -> dict[str, dict]:
    every = _all()
    if subset == "full":
        return every
    if subset == "ci":
        return {name: every[name] for name in CI}
    raise ValueError(f"unknown subset {subset!r}: use full or ci")
