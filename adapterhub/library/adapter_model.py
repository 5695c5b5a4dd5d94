"""``AdapterModel``: a plain base model plus any number of named, flexible prediction heads.

    model = adapterhub.AdapterModel.from_pretrained("bert-base-uncased")   # the base model, adapter API included
    model.add_adapter("sst", config="seq_bn")
    model.add_classification_head("sst", num_labels=2)
    model.train_adapter("sst")                    # trains the adapter and the head of the same name
    model.save_adapter("out/sst", "sst")          # adapter + head_config.json + model_head.safetensors

The base model is kept as the attribute named by its ``base_model_prefix`` (``model.bert``), so weight names are
those of the ``adapters`` library's ``<Arch>AdapterModel`` (``bert.encoder...``, ``heads.sst.1.weight``); an
instance reports its class as ``BertAdapterModel``, ``RobertaAdapterModel``, ... (the ``model_class`` written in
saved files), so heads move both ways between the two libraries. The head modules are in :mod:`.heads` and
:mod:`.lm_heads`, building them from a config in :mod:`.head_types`, saving and loading them in :mod:`.head_io`.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any, Callable, ClassVar, cast

import torch
import transformers
from torch import nn
from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

from . import checkpoints, head_io
from . import model as api
from .composition import Block, Stack
from .errors import AdapterConfigError, AdapterNotFoundError
from .fusion import train_adapter_fusion as _train_adapter_fusion
from .head_types import build_head, check_new_head
from .heads import PredictionHead

_CLASSES: dict[str, type] = {}


def _class_for(base_class: type) -> type:
    """``BertModel`` -> a subclass of AdapterModel named ``BertAdapterModel`` (the peer's class name)."""
    stem = base_class.__name__[:-5] if base_class.__name__.endswith("Model") else base_class.__name__
    name = stem + "AdapterModel"
    if name not in _CLASSES:
        cls = type(name, (AdapterModel,), {"__module__": __name__, "__qualname__": name})
        _CLASSES[name] = cls
        globals()[name] = cls  # importable by name, so that the model pickles
    return _CLASSES[name]


class AdapterModel(nn.Module):
    """A plain Transformers base model with the adapter API and named, flexible prediction heads."""

    has_flex_heads: ClassVar[bool] = True
    main_input_name = "input_ids"

    def __new__(cls, base_model=None, *args, **kwargs):
        if cls is AdapterModel and base_model is not None:
            cls = _class_for(type(base_model))
        return super().__new__(cls)

    def __init__(self, base_model: transformers.PreTrainedModel):
        super().__init__()
        prefix = getattr(base_model, "base_model_prefix", "")
        if not prefix or getattr(base_model, "base_model", base_model) is not base_model:
            raise AdapterConfigError(
                f"AdapterModel wraps a bare base model (e.g. from AutoModel); got {type(base_model).__name__}"
            )
        if "adapterhub_state" in base_model.__dict__:
            raise AdapterConfigError(
                "this base model already went through adapterhub.init; wrap the plain model in AdapterModel instead"
            )
        self.base_model_prefix = prefix
        self.add_module(prefix, base_model)
        self.config = base_model.config
        self.heads = nn.ModuleDict()
        self._active_heads: list[str] = []
        api.init(self)
        for name, function in _OVERRIDES.items():
            self.__dict__[name] = types.MethodType(function, self)
        self.train(base_model.training)

    # -- construction --

    @classmethod
    def from_pretrained(cls, path_or_config, **kwargs: Any) -> "AdapterModel":
        """Load the base model with ``AutoModel.from_pretrained(path, **kwargs)`` (or build it from a config).

        A checkpoint written by :meth:`save_pretrained` (or by an ``adapters`` ``<Arch>AdapterModel``) also
        brings back its adapters, fusion layers and heads (named in its config.json) with their weights."""
        if isinstance(path_or_config, transformers.PretrainedConfig):
            return cls.from_config(path_or_config, **kwargs)
        base, unused = checkpoints.load_base_model(path_or_config, **kwargs)
        model = AdapterModel(base)
        saved = {key: model.config.__dict__.pop(key, None) for key in checkpoints.CONFIG_KEYS}
        if any(saved.values()):
            unused = checkpoints.restore(
                model, path_or_config, saved["adapters"], saved["prediction_heads"], unused, **kwargs
            )
        checkpoints.warn_unused(path_or_config, model, unused)
        return model

    def save_pretrained(self, save_directory, use_safetensors: bool = True) -> None:
        """The whole model (base, adapters, fusion layers, heads) as ``<Arch>AdapterModel`` saves it."""
        checkpoints.save_pretrained(self, save_directory, use_safetensors=use_safetensors)

    def state_dict(
        self,
        *,
        destination=None,
        prefix: str = "",
        keep_vars: bool = False,
        adapters_only: bool | None = None,
    ):
        """``nn.Module.state_dict``; while the model is set up for adapter training (after ``train_adapter`` or
        ``train_adapter_fusion``; or with ``adapters_only=True``) only the weights that are trained: the adapters,
        fusion layers and heads being trained. ``transformers.Trainer`` saves an ``AdapterModel`` (not a
        ``PreTrainedModel``) as its ``state_dict()``, so its checkpoints hold these weights only, and it restores
        them (resuming, ``load_best_model_at_end``) with a non-strict ``load_state_dict``.
        ``adapters_only=False``: every weight, as ``nn.Module`` gives them."""
        weights = super().state_dict(destination=destination, prefix=prefix, keep_vars=keep_vars)
        training = api._state(self).training
        if adapters_only is None:
            adapters_only = training is not None
        if not adapters_only:
            return weights
        if training is None:
            raise ValueError(
                "state_dict(adapters_only=True) gives the weights being trained: call train_adapter(...) first"
            )
        trained = {prefix + name for name, param in self.named_parameters() if param.requires_grad}
        for key in [k for k in weights if k.startswith(prefix) and k not in trained]:
            del weights[key]
        return weights

    @classmethod
    def from_config(cls, config: transformers.PretrainedConfig, **kwargs: Any) -> "AdapterModel":
        return AdapterModel(transformers.AutoModel.from_config(config, **kwargs))

    @property
    def base_model(self) -> transformers.PreTrainedModel:
        return getattr(self, self.base_model_prefix)

    def _head(self, name: str) -> PredictionHead:
        """The head module ``name`` (``model.heads[name]``, typed)."""
        return cast(PredictionHead, self.heads[name])

    @property
    def device(self) -> torch.device:
        return self.base_model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.base_model.dtype

    def get_input_embeddings(self) -> nn.Module:
        return self.base_model.get_input_embeddings()

    def activation_checkpointing_enable(self, *args: Any, **kwargs: Any) -> None:
        """Gradient (activation) checkpointing of the base model (what Trainer's ``gradient_checkpointing`` calls)."""
        self.base_model.activation_checkpointing_enable(*args, **kwargs)

    def activation_checkpointing_disable(self) -> None:
        self.base_model.activation_checkpointing_disable()

    @property
    def is_decoder_only(self) -> bool:
        """Decoders (GPT-2, Llama, ...) pool the last non-padding token; encoders the first token."""
        return self.config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES

    # -- heads --

    def add_prediction_head_from_config(
        self, head_name: str, config: dict[str, Any], overwrite_ok: bool = False, set_active: bool = True
    ) -> None:
        check_new_head(self.heads, head_name, overwrite_ok)
        self.heads[head_name] = build_head(self, head_name, config)
        if set_active:
            self.active_head = head_name

    def add_classification_head(
        self,
        head_name: str,
        num_labels: int = 2,
        layers: int = 2,
        activation_function: str | None = "tanh",
        overwrite_ok: bool = False,
        multilabel: bool = False,
        id2label: dict | None = None,
        use_pooler: bool = False,
        bias: bool = True,
        dropout_prob: float | None = None,
        set_active: bool = True,
    ) -> None:
        """A sequence classification head (``multilabel``: one sigmoid per label; ``num_labels=1``: regression)."""
        self.add_prediction_head_from_config(
            head_name,
            {
                "head_type": "multilabel_classification" if multilabel else "classification",
                "num_labels": num_labels,
                "layers": layers,
                "activation_function": activation_function,
                "id2label": id2label,
                "use_pooler": use_pooler,
                "bias": bias,
                "dropout_prob": dropout_prob,
            },
            overwrite_ok=overwrite_ok,
            set_active=set_active,
        )

    def add_multilabel_classification_head(self, head_name: str, **kwargs: Any) -> None:
        self.add_classification_head(head_name, multilabel=True, **kwargs)

    def add_tagging_head(
        self,
        head_name: str,
        num_labels: int = 2,
        layers: int = 1,
        activation_function: str | None = "tanh",
        overwrite_ok: bool = False,
        id2label: dict | None = None,
        dropout_prob: float | None = None,
        set_active: bool = True,
    ) -> None:
        """A token classification head (one prediction per token)."""
        self.add_prediction_head_from_config(
            head_name,
            {
                "head_type": "tagging",
                "num_labels": num_labels,
                "layers": layers,
                "activation_function": activation_function,
                "id2label": id2label,
                "dropout_prob": dropout_prob,
            },
            overwrite_ok=overwrite_ok,
            set_active=set_active,
        )

    def add_qa_head(
        self,
        head_name: str,
        num_labels: int = 2,
        layers: int = 1,
        activation_function: str | None = "tanh",
        overwrite_ok: bool = False,
        id2label: dict | None = None,
        dropout_prob: float | None = None,
        set_active: bool = True,
    ) -> None:
        """An extractive question answering head (start and end logits per token)."""
        self.add_prediction_head_from_config(
            head_name,
            {
                "head_type": "question_answering",
                "num_labels": num_labels,
                "layers": layers,
                "activation_function": activation_function,
                "id2label": id2label,
                "dropout_prob": dropout_prob,
            },
            overwrite_ok=overwrite_ok,
            set_active=set_active,
        )

    def add_multiple_choice_head(
        self,
        head_name: str,
        num_choices: int = 2,
        layers: int = 2,
        activation_function: str | None = "tanh",
        overwrite_ok: bool = False,
        id2label: dict | None = None,
        use_pooler: bool = False,
        dropout_prob: float | None = None,
        set_active: bool = True,
    ) -> None:
        """A multiple choice head: one score per choice, inputs of shape (batch, num_choices, length)."""
        self.add_prediction_head_from_config(
            head_name,
            {
                "head_type": "multiple_choice",
                "num_choices": num_choices,
                "layers": layers,
                "activation_function": activation_function,
                "id2label": id2label,
                "use_pooler": use_pooler,
                "dropout_prob": dropout_prob,
            },
            overwrite_ok=overwrite_ok,
            set_active=set_active,
        )

    def add_masked_lm_head(
        self, head_name: str, activation_function: str | None = "gelu", layers: int = 2, **options: Any
    ) -> None:
        """A masked language-model head (BERT style: dense, activation, LayerNorm, output embeddings tied to the
        input embeddings); the inverse of the active invertible adapter comes before the output embeddings."""
        overwrite_ok = options.pop("overwrite_ok", False)
        set_active = options.pop("set_active", True)
        config = {
            "head_type": "masked_lm",
            "activation_function": activation_function,
            "layers": layers,
            **options,
        }
        self.add_prediction_head_from_config(
            head_name, config, overwrite_ok=overwrite_ok, set_active=set_active
        )

    def add_causal_lm_head(
        self, head_name: str, activation_function: str | None = "gelu", layers: int = 2, **options: Any
    ) -> None:
        """A causal language-model head (by default as AdapterHub's: dense, activation, LayerNorm, then the output
        embeddings, tied to the input embeddings; labels shifted); the inverse of the active invertible adapter
        comes before the output embeddings."""
        overwrite_ok = options.pop("overwrite_ok", False)
        set_active = options.pop("set_active", True)
        config = {
            "head_type": "causal_lm",
            "activation_function": activation_function,
            "layers": layers,
            "layer_norm": True,
            "bias": True,
            **options,
        }
        self.add_prediction_head_from_config(
            head_name, config, overwrite_ok=overwrite_ok, set_active=set_active
        )

    def delete_head(self, head_name: str) -> None:
        if head_name not in self.heads:
            raise AdapterNotFoundError(
                f"no head named {head_name!r} (heads: {', '.join(self.heads) or 'none'})"
            )
        del self.heads[head_name]
        self._active_heads = [h for h in self._active_heads if h != head_name]

    @property
    def active_head(self) -> str | list[str] | None:
        if not self._active_heads:
            return None
        return self._active_heads[0] if len(self._active_heads) == 1 else list(self._active_heads)

    @active_head.setter
    def active_head(self, head: str | list[str] | None) -> None:
        names = [] if not head else [head] if isinstance(head, str) else list(head)
        missing = [n for n in names if n not in self.heads]
        if missing:
            raise AdapterNotFoundError(
                f"no head named {', '.join(map(repr, missing))} (heads: {', '.join(self.heads) or 'none'})"
            )
        self._active_heads = names

    def get_labels_dict(self, head_name: str | None = None) -> dict[int, str]:
        name = head_name or (self._active_heads[0] if self._active_heads else None)
        if name is None or name not in self.heads:
            raise AdapterNotFoundError(f"no head named {name!r}")
        return {i: label for label, i in (self._head(name).config.get("label2id") or {}).items()}

    def get_labels(self, head_name: str | None = None) -> list[str]:
        return [label for _, label in sorted(self.get_labels_dict(head_name).items())]

    # -- saving and loading heads (head_config.json + model_head.safetensors) --

    def save_head(self, save_directory, head_name: str, use_safetensors: bool = True) -> None:
        head_io.save_head(self, save_directory, head_name, use_safetensors=use_safetensors)

    def prepare_saved_head(self, folder: Path, name: str) -> Callable[[], None]:
        """Read and check the head saved in ``folder``; returns a function that installs it as ``name``."""
        return head_io.prepare_saved_head(self, folder, name)

    def load_head(self, save_directory, load_as: str | None = None) -> str:
        """Load a head saved with :meth:`save_head` (or ``save_adapter``); it becomes the active head."""
        return head_io.load_head(self, save_directory, load_as=load_as)

    # -- forward --

    def _pooled(self, head: PredictionHead, outputs, input_ids, attention_mask) -> torch.Tensor:
        hidden = outputs.last_hidden_state
        if head.config.get("use_pooler"):
            return outputs.pooler_output
        if not self.is_decoder_only:
            return hidden[:, 0]
        pad = getattr(self.config, "pad_token_id", None)
        if input_ids is not None and pad is not None:
            mask = input_ids != pad
        elif attention_mask is not None:
            mask = attention_mask.bool()
        else:
            return hidden[:, -1]
        positions = torch.arange(mask.shape[-1], device=hidden.device)
        last = (positions * mask.to(hidden.device)).argmax(-1)  # last non-padding position (0 if none)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        labels=None,
        head: str | list[str] | None = None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        start_positions=None,
        end_positions=None,
        **kwargs,
    ):
        """The base model, then the active head (or ``head``); without a head, the base model's output.

        Inputs of shape (batch, choices, length) (multiple choice) are run as batch * choices sequences."""
        flat = {
            k: (v.reshape(-1, v.shape[-1]) if v is not None and v.dim() > 2 else v)
            for k, v in {
                "input_ids": input_ids,
                "attention_mask": attention_mask,
                "token_type_ids": token_type_ids,
                "position_ids": position_ids,
            }.items()
        }
        if inputs_embeds is not None and inputs_embeds.dim() > 3:
            inputs_embeds = inputs_embeds.reshape(-1, *inputs_embeds.shape[-2:])
        given = {
            **flat,
            "inputs_embeds": inputs_embeds,
            "output_attentions": output_attentions,
            "output_hidden_states": output_hidden_states,
        }
        outputs = self.base_model(
            **{k: v for k, v in given.items() if v is not None}, **kwargs, return_dict=True
        )
        names = [head] if isinstance(head, str) else list(head) if head else list(self._active_heads)
        if not names:
            return outputs
        missing = [n for n in names if n not in self.heads]
        if missing:
            raise AdapterNotFoundError(f"no head named {', '.join(map(repr, missing))}")
        targets = {"start_positions": start_positions, "end_positions": end_positions}
        results = []
        for name in names:
            module = self._head(name)
            features = (
                outputs.last_hidden_state
                if module.per_token
                else self._pooled(module, outputs, flat["input_ids"], flat["attention_mask"])
            )
            result = module.output(module(features), outputs, labels, flat["attention_mask"], targets)
            results.append(result if return_dict is not False else result.to_tuple())
        return results[0] if len(results) == 1 else results


# ---------------------------------------------------------------- adapter API methods that know about the heads


def _heads_to_train(model: AdapterModel, setup: Block) -> list[str]:
    """The heads named like an adapter (or fusion) of the setup; else the active head(s)."""
    candidates = setup.names() + [b.name for b in setup.fuse_blocks()]
    chosen = [n for n in candidates if n in model.heads]
    return chosen or list(model._active_heads)


def _unfreeze_heads(model: AdapterModel, adapter_setup, train_head: bool) -> None:
    setup = api.parse_setup(adapter_setup) if not isinstance(adapter_setup, Block) else adapter_setup
    for param in model.heads.parameters():
        param.requires_grad = False
    if train_head and setup is not None:
        for name in _heads_to_train(model, setup):
            for param in model.heads[name].parameters():
                param.requires_grad = True


def _train_adapter(self, adapter_setup, train_head: bool = True) -> None:
    """Train the adapter(s) and the head of the same name (else the active head); freeze everything else."""
    api.train_adapter(self, adapter_setup, train_head=False)
    self.set_active_adapters(api._state(self).training)  # also activates the head of the same name
    _unfreeze_heads(self, adapter_setup, train_head)


def _train_fusion(self, adapter_setup, unfreeze_adapters: bool = False, train_head: bool = True) -> None:
    _train_adapter_fusion(self, adapter_setup, unfreeze_adapters=unfreeze_adapters, train_head=False)
    _unfreeze_heads(self, api._state(self).training, train_head)


def _set_active_adapters(self, adapter_setup, skip_layers: Any = None) -> None:
    """Activate the setup; as in AdapterHub, a head named like the last adapter of a Stack becomes active too."""
    api.set_active_adapters(self, adapter_setup, skip_layers)
    setup = api._state(self).active
    if isinstance(setup, Stack) and isinstance(setup.children[-1], str) and setup.children[-1] in self.heads:
        self.active_head = setup.children[-1]


_OVERRIDES: dict[str, Callable[..., None]] = {
    "train_adapter": _train_adapter,
    "train_adapter_fusion": _train_fusion,
    "set_active_adapters": _set_active_adapters,
}
