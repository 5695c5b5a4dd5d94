"""Flexible prediction heads: ``AdapterModel``, a plain base model plus any number of named task heads.

    model = adapterhub.AdapterModel.from_pretrained("bert-base-uncased")   # the base model, adapter API included
    model.add_adapter("sst", config="seq_bn")
    model.add_classification_head("sst", num_labels=2)
    model.train_adapter("sst")                    # trains the adapter and the head of the same name
    model.save_adapter("out/sst", "sst")          # adapter + head_config.json + model_head.safetensors

The base model is kept as the attribute named by its ``base_model_prefix`` (``model.bert``), so weight names are
those of the ``adapters`` library's ``<Arch>AdapterModel`` (``bert.encoder...``, ``heads.sst.1.weight``); an
instance reports its class as ``BertAdapterModel``, ``RobertaAdapterModel``, ... (the ``model_class`` written in
saved files), so heads move both ways between the two libraries.

Head layout (AdapterHub format): ``nn.Sequential`` of, per layer, ``Dropout`` then ``Linear`` (then the activation,
for all but the last layer): a 2-layer classification head is [Dropout, Linear(h, h), Activation, Dropout,
Linear(h, num_labels)], i.e. keys ``heads.NAME.1.*`` and ``heads.NAME.4.*``. Head types: ``classification``,
``multilabel_classification``, ``multiple_choice`` (these read the first token's hidden state in encoders, the
last non-padding token's in decoders, or the pooler output with ``use_pooler``), ``tagging`` and
``question_answering`` (these read every token).
"""

from __future__ import annotations

import logging
import re
import types
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
import transformers
from torch import nn
from transformers.modeling_outputs import (
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

from . import checkpoints, saving
from . import model as api
from .composition import Block, Stack
from .errors import AdapterConfigError, AdapterExistsError, AdapterLoadError, AdapterNotFoundError
from .fusion import train_adapter_fusion as _train_adapter_fusion
from .methods.bottleneck.layers import activation

logger = logging.getLogger(__name__)
_NAME = re.compile(r"^[A-Za-z0-9_\-,]+$")


# ------------------------------------------------------------------------------------------ heads


class PredictionHead(nn.Sequential):
    """A task head; ``config`` is the dict saved as the ``config`` of ``head_config.json``."""

    head_type: ClassVar[str] = ""
    per_token: ClassVar[bool] = False
    labelled: ClassVar[bool] = True  # has labels (label2id); language-model heads have none
    size_key: ClassVar[str] = "num_labels"  # the config entry that sets the number of outputs
    #: the options of this head type: the keys of its saved config besides head_type and label2id, with defaults
    options: ClassVar[dict[str, Any]] = {
        "num_labels": 2,
        "layers": 2,
        "activation_function": "tanh",
        "use_pooler": False,
        "bias": True,
        "dropout_prob": None,
    }

    def __init__(self, name: str, config: dict[str, Any], model_config):
        super().__init__()
        self.name = name
        self.config = config
        layers = config["layers"]
        if not isinstance(layers, int) or isinstance(layers, bool) or layers < 1:
            raise AdapterConfigError(f"head {name!r}: layers must be a positive integer, got {layers!r}")
        size = config[self.size_key]
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise AdapterConfigError(
                f"head {name!r}: {self.size_key} must be a positive integer, got {size!r}"
            )
        num_outputs = 1 if self.size_key == "num_choices" else size
        hidden = model_config.hidden_size if hasattr(model_config, "hidden_size") else model_config.dim
        dropout = _dropout_prob(config, model_config)
        act = config.get("activation_function")
        modules: list[nn.Module] = []
        for index in range(layers):
            modules.append(nn.Dropout(dropout))
            if index < layers - 1:
                modules.append(nn.Linear(hidden, hidden))
                if act:
                    modules.append(activation(act))
            else:
                modules.append(nn.Linear(hidden, num_outputs, bias=config.get("bias", True)))
        for index, module in enumerate(modules):
            self.add_module(str(index), module)
        std = getattr(model_config, "initializer_range", 0.02)
        with torch.no_grad():
            for module in modules:
                if isinstance(module, nn.Linear):
                    nn.init.normal_(module.weight, mean=0.0, std=std)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)

    def loss(
        self, logits: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        raise NotImplementedError

    def output(self, logits, outputs, labels, attention_mask, targets: dict[str, torch.Tensor]):
        """The head's model output (with the loss when ``labels`` are given)."""
        loss = self.loss(logits, labels, attention_mask) if labels is not None else None
        return SequenceClassifierOutput(
            loss=loss,
            logits=logits,
            hidden_states=getattr(outputs, "hidden_states", None),
            attentions=getattr(outputs, "attentions", None),
        )


def _dropout_prob(config: dict, model_config) -> float:
    # the head's own value, else the model's classifier dropout, else its hidden dropout, else 0 (as AdapterHub)
    for value in (
        config.get("dropout_prob"),
        getattr(model_config, "classifier_dropout", None),
        getattr(model_config, "hidden_dropout_prob", None),
    ):
        if value is not None:
            return float(value)
    return 0.0


class ClassificationHead(PredictionHead):
    head_type = "classification"

    def loss(self, logits, labels, attention_mask):
        if self.config["num_labels"] == 1:  # regression
            return nn.functional.mse_loss(logits.view(-1), labels.view(-1).to(logits.dtype))
        return nn.functional.cross_entropy(logits.view(-1, self.config["num_labels"]), labels.view(-1))


class MultiLabelClassificationHead(PredictionHead):
    head_type = "multilabel_classification"

    def loss(self, logits, labels, attention_mask):
        return nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


class TaggingHead(PredictionHead):
    head_type = "tagging"
    per_token = True
    options = {"num_labels": 2, "layers": 1, "activation_function": "tanh", "dropout_prob": None}

    def loss(self, logits, labels, attention_mask):
        labels = labels.view(-1)
        if attention_mask is not None:  # padding positions do not count
            labels = torch.where(attention_mask.view(-1) == 1, labels, torch.full_like(labels, -100))
        return nn.functional.cross_entropy(
            logits.view(-1, self.config["num_labels"]), labels, ignore_index=-100
        )

    def output(self, logits, outputs, labels, attention_mask, targets):
        loss = self.loss(logits, labels, attention_mask) if labels is not None else None
        return TokenClassifierOutput(
            loss=loss,
            logits=logits,
            hidden_states=getattr(outputs, "hidden_states", None),
            attentions=getattr(outputs, "attentions", None),
        )


class QuestionAnsweringHead(PredictionHead):
    """Extractive QA: per token a start and an end logit (``num_labels=2``); loss from start/end positions."""

    head_type = "question_answering"
    per_token = True
    options = {"num_labels": 2, "layers": 1, "activation_function": "tanh", "dropout_prob": None}

    def output(self, logits, outputs, labels, attention_mask, targets):
        start_logits, end_logits = (t.squeeze(-1).contiguous() for t in logits.split(1, dim=-1)[:2])
        loss = None
        start, end = targets.get("start_positions"), targets.get("end_positions")
        if start is not None and end is not None:
            ignored = start_logits.size(1)  # positions outside the input are ignored
            start = start.view(-1).clamp(0, ignored)
            end = end.view(-1).clamp(0, ignored)
            loss = (
                nn.functional.cross_entropy(start_logits, start, ignore_index=ignored)
                + nn.functional.cross_entropy(end_logits, end, ignore_index=ignored)
            ) / 2
        return QuestionAnsweringModelOutput(
            loss=loss,
            start_logits=start_logits,
            end_logits=end_logits,
            hidden_states=getattr(outputs, "hidden_states", None),
            attentions=getattr(outputs, "attentions", None),
        )


class MultipleChoiceHead(PredictionHead):
    """One score per choice: inputs of shape (batch, num_choices, length) are scored as batch * num_choices rows."""

    head_type = "multiple_choice"
    size_key = "num_choices"
    options = {
        "num_choices": 2,
        "layers": 2,
        "activation_function": "tanh",
        "use_pooler": False,
        "dropout_prob": None,
    }

    def output(self, logits, outputs, labels, attention_mask, targets):
        logits = logits.view(-1, self.config["num_choices"])
        loss = nn.functional.cross_entropy(logits, labels.view(-1)) if labels is not None else None
        return MultipleChoiceModelOutput(
            loss=loss,
            logits=logits,
            hidden_states=getattr(outputs, "hidden_states", None),
            attentions=getattr(outputs, "attentions", None),
        )


HEAD_TYPES: dict[str, type[PredictionHead]] = {
    cls.head_type: cls
    for cls in (
        ClassificationHead,
        MultiLabelClassificationHead,
        TaggingHead,
        QuestionAnsweringHead,
        MultipleChoiceHead,
    )
}


def _label2id(num_labels: int, id2label: dict | None) -> dict[str, int]:
    if id2label is None:
        return {f"LABEL_{i}": i for i in range(num_labels)}
    return {str(label): int(i) for i, label in id2label.items()}


# ------------------------------------------------------------------------------------------ the model


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

    @classmethod
    def from_config(cls, config: transformers.PretrainedConfig, **kwargs: Any) -> "AdapterModel":
        return AdapterModel(transformers.AutoModel.from_config(config, **kwargs))

    @property
    def base_model(self) -> nn.Module:
        return getattr(self, self.base_model_prefix)

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

    def _check_new_head(self, name: str, overwrite_ok: bool) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise AdapterConfigError(
                f"invalid head name {name!r}: use letters, digits, '_', '-' and ',' only"
            )
        if name in self.heads and not overwrite_ok:
            raise AdapterExistsError(
                f"a head named {name!r} already exists; pass overwrite_ok=True to replace it"
            )

    def _build_head(self, name: str, config: dict[str, Any]) -> PredictionHead:
        config = dict(config)
        head_type = config.get("head_type")
        if head_type not in HEAD_TYPES:
            raise AdapterConfigError(
                f"head {name!r}: unsupported head type {head_type!r}; supported: {', '.join(HEAD_TYPES)}"
            )
        cls = HEAD_TYPES[head_type]
        allowed = set(cls.options) | {"head_type", "label2id", "id2label"}
        unknown = sorted(set(config) - allowed)
        if unknown:
            raise AdapterConfigError(
                f"head {name!r}: unknown option(s) {', '.join(unknown)} for a {head_type} head"
            )
        id2label = config.pop("id2label", None)
        full = {"head_type": head_type}
        for key, default in cls.options.items():
            full[key] = config.get(key, default)
        label2id = config.get("label2id")
        if not cls.labelled:
            full["label2id"] = None
        else:
            full["label2id"] = dict(label2id) if label2id else _label2id(full[cls.size_key], id2label)
        if full.get("use_pooler") and getattr(self.base_model, "pooler", None) is None:
            raise AdapterConfigError(
                f"head {name!r}: use_pooler=True, but this {type(self.base_model).__name__} has no pooler"
            )
        head = cls(name, full, self.config)
        reference = next(self.base_model.parameters())
        head = head.to(device=reference.device, dtype=reference.dtype).train(self.training)
        if hasattr(head, "tie"):  # language-model heads share the input embeddings
            head.tie(self)
        return head

    def add_prediction_head_from_config(
        self, head_name: str, config: dict[str, Any], overwrite_ok: bool = False, set_active: bool = True
    ) -> None:
        self._check_new_head(head_name, overwrite_ok)
        self.heads[head_name] = self._build_head(head_name, config)
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
        if name not in self.heads:
            raise AdapterNotFoundError(f"no head named {name!r}")
        return {i: label for label, i in (self.heads[name].config.get("label2id") or {}).items()}

    def get_labels(self, head_name: str | None = None) -> list[str]:
        return [label for _, label in sorted(self.get_labels_dict(head_name).items())]

    # -- saving and loading heads (head_config.json + model_head.safetensors) --

    def save_head(self, save_directory, head_name: str, use_safetensors: bool = True) -> None:
        if head_name not in self.heads:
            raise AdapterNotFoundError(
                f"no head named {head_name!r} (heads: {', '.join(self.heads) or 'none'})"
            )
        state = api._state(self)
        folder = Path(save_directory)
        head = self.heads[head_name]
        weights = {f"heads.{head_name}.{k}": v for k, v in head.state_dict().items()}
        saving.write_weights(
            folder, (saving.HEAD_WEIGHTS_NAME, saving.LEGACY_HEAD_WEIGHTS_NAME), weights, use_safetensors
        )
        saving.write_json(
            folder / saving.HEAD_CONFIG_NAME,
            {"config": dict(head.config), **saving.model_header(state, head_name)},
        )

    def prepare_saved_head(self, folder: Path, name: str) -> Callable[[], None]:
        """Read and check the head saved in ``folder``; returns a function that installs it as ``name``."""
        path = Path(folder) / saving.HEAD_CONFIG_NAME
        header = saving.read_json(path)
        config = header.get("config")
        if config is None:
            raise AdapterLoadError(
                f"{path} holds the fixed head of a {header.get('model_class')} (config null); this model "
                f"({type(self).__name__}) has flexible heads; pass with_head=False to load without it, or load it "
                f"into a {header.get('model_class')}"
            )
        if not isinstance(config, dict):
            raise AdapterLoadError(f"{path}: 'config' must be a JSON object, got {config!r}")
        saving._check_model(header, api._state(self), path)
        try:
            head = self._build_head(name, config)
        except AdapterConfigError as error:
            raise AdapterLoadError(f"{path}: {error}") from None
        weights, weights_path = saving.read_tensors(
            Path(folder), (saving.HEAD_WEIGHTS_NAME, saving.LEGACY_HEAD_WEIGHTS_NAME)
        )
        saved = re.compile(r"^heads\." + re.escape(header.get("name") or name) + r"\.")
        local = {}
        for key, value in weights.items():
            if not saved.match(key):
                raise AdapterLoadError(f"{weights_path}: unexpected key {key!r} (expected heads.<name>.*)")
            local[saved.sub("", key)] = value
        saving._compare({k: v for k, v in head.state_dict().items()}, local, "the head", weights_path)
        tied = head.tied_keys() if hasattr(head, "tied_keys") else set()
        with torch.no_grad():
            for key, value in local.items():
                param = head.get_parameter(key)
                if key not in tied:
                    param.copy_(value)
                elif not torch.equal(value.to(param.device, param.dtype), param):
                    raise AdapterLoadError(
                        f"{weights_path}: heads.{name}.{key} is tied to this model's input embeddings, but "
                        f"differs from them; was the head saved from another base model?"
                    )

        def install() -> None:
            if name in self.heads:
                logger.warning("replacing the existing head %r with the one loaded from %s", name, folder)
            self.heads[name] = head
            self.active_head = name

        return install

    def load_head(self, save_directory, load_as: str | None = None) -> str:
        """Load a head saved with :meth:`save_head` (or ``save_adapter``); it becomes the active head."""
        folder = saving.resolve_location(save_directory)
        if not (folder / saving.HEAD_CONFIG_NAME).is_file():
            raise AdapterLoadError(f"no {saving.HEAD_CONFIG_NAME} in {folder}")
        name = load_as or saving.read_json(folder / saving.HEAD_CONFIG_NAME).get("name")
        if not name:
            raise AdapterLoadError(f"{folder / saving.HEAD_CONFIG_NAME} names no head; pass load_as=...")
        self._check_new_head(name, overwrite_ok=True)
        self.prepare_saved_head(folder, name)()
        return name

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
            module = self.heads[name]
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


_OVERRIDES = {
    "train_adapter": _train_adapter,
    "train_adapter_fusion": _train_fusion,
    "set_active_adapters": _set_active_adapters,
}


from . import lm_heads  # noqa: E402,F401  (registers the masked_lm and causal_lm head types)
