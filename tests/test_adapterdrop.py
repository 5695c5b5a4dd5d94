"""AdapterDrop: set_active_adapters(..., skip_layers=...) leaves the adapters of those layers out, in training and
in inference, and backward stops below the lowest layer that keeps an adapter."""

from __future__ import annotations

import pytest
import torch

import adapterhub
from adapterhub import AdapterConfigError
from tiny_models import inputs, make_model

CONFIGS = ["seq_bn[reduction_factor=4]", "par_bn[reduction_factor=4]", "lora[r=4]", "ia3"]


def _perturbed(model):
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "adapters" in name or "loras" in name:
                param.add_(torch.randn_like(param) * 0.1)
    return model


def _outputs(model, **kwargs):
    with torch.no_grad():
        out = model(**inputs(), **kwargs)
    return out.logits


@pytest.mark.parametrize("arch", ["bert", "gpt2", "llama"])
@pytest.mark.parametrize("config", CONFIGS)
def test_dropped_layers_compute_as_if_their_adapters_were_left_out(arch, config):
    torch.manual_seed(0)
    dropped = _perturbed(adapterhub.init(make_model(arch, "seqcls", num_labels=2)))
    dropped.add_adapter("a", config=config)
    _perturbed(dropped)
    left_out = adapterhub.init(make_model(arch, "seqcls", num_labels=2))
    suffix = "leave_out=[0]"
    left_out.add_adapter(
        "a", config=f"{config[:-1]},{suffix}]" if config.endswith("]") else f"{config}[{suffix}]"
    )
    state = dropped.state_dict()
    with torch.no_grad():
        for key, value in left_out.state_dict().items():
            value.copy_(state[key])
    dropped.set_active_adapters("a", skip_layers=1)
    left_out.set_active_adapters("a")
    dropped.eval(), left_out.eval()
    assert torch.equal(_outputs(dropped), _outputs(left_out))
    dropped.set_active_adapters("a")  # all layers again: layer 0's adapter changes the output
    assert not torch.allclose(_outputs(dropped), _outputs(left_out))
    dropped.set_active_adapters("a", skip_layers=[0, 1])  # every layer dropped: the base model
    base = make_model(arch, "seqcls", num_labels=2)
    base.load_state_dict({k: v for k, v in dropped.state_dict().items() if k in base.state_dict()})
    assert torch.equal(_outputs(dropped), _outputs(base.eval()))


@pytest.mark.parametrize("arch", ["bert", "gpt2"])
def test_backward_stops_below_the_lowest_active_adapter(arch):
    model = _perturbed(adapterhub.init(make_model(arch, "seqcls", num_labels=2)))
    model.add_adapter("a", config="seq_bn[reduction_factor=4]")
    model.train_adapter("a")
    _perturbed(model)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    model.enable_input_require_grads()  # as gradient checkpointing does: the embeddings' output needs a gradient
    reached = []
    layer0 = model.adapterhub_state.layers[0]

    def watch(module, args, output):
        (output[0] if isinstance(output, tuple) else output).register_hook(reached.append)

    layer0.register_forward_hook(watch)

    def gradients(**kwargs):
        reached.clear()
        model.set_active_adapters("a", **kwargs)
        model.zero_grad(set_to_none=True)
        model(**inputs(), labels=torch.tensor([0, 1])).loss.backward()
        return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    full = gradients()
    assert len(reached) == 1  # backward went through layer 0
    dropped = gradients(skip_layers=1)
    assert reached == []  # ... and now stops above it
    assert not any(".layer.0." in k or ".h.0." in k for k in dropped)
    assert set(dropped) == {k for k in full if ".layer.0." not in k and ".h.0." not in k}
    # the gradients above are those of a model without layer 0's adapter (checked against deactivating it)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if (".layer.0." in name or ".h.0." in name) and "adapters" in name:
                param.zero_()
    zeroed = gradients()
    for key in dropped:
        if ".layer.0." not in key and ".h.0." not in key:
            torch.testing.assert_close(dropped[key], zeroed[key], rtol=1e-5, atol=1e-7)
    # a trainable weight below (here the embeddings): no stop, its gradient is computed
    model.get_input_embeddings().weight.requires_grad = True
    below = gradients(skip_layers=1)
    assert len(reached) == 1 and model.get_input_embeddings().weight.grad is not None and below


def test_training_with_dropped_layers_leaves_their_adapters_unchanged():
    from adapterhub.training import TrainingArgs, train
    from tiny_models import random_token_examples

    model = adapterhub.init(make_model("bert", "seqcls", num_labels=2))
    model.add_adapter("a", config="seq_bn[reduction_factor=4]")
    model.train_adapter("a")
    model.set_active_adapters("a", skip_layers=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    examples = random_token_examples(32, seed=0)
    features = [{"input_ids": e["input_ids"]} for e in examples]
    train(
        model,
        features,
        [e["labels"] for e in examples],
        TrainingArgs(learning_rate=1e-2, batch_size=8, max_steps=3),
    )
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(".layer.1." in k or k.startswith("classifier.") for k in changed)
    assert any(".layer.1.output.adapters.a." in k for k in changed)


def test_skip_layers_is_checked():
    model = adapterhub.init(make_model("bert", "base"))
    model.add_adapter("a")
    for bad, message in (
        (3, "has 2 layers"),
        ([0, 5], "not layer indices"),
        ("0", "not str"),
        (True, "not True"),
    ):
        with pytest.raises(AdapterConfigError, match=message):
            model.set_active_adapters("a", skip_layers=bad)
    assert model.adapterhub_state.skip_layers == frozenset()  # nothing half-applied
    model.set_active_adapters("a", skip_layers=(1,))
    assert model.adapterhub_state.skip_layers == {1}
    model.set_active_adapters("a")
    assert model.adapterhub_state.skip_layers == frozenset()


def test_an_invertible_adapter_below_still_gets_its_gradient():
    model = _perturbed(adapterhub.init(make_model("bert", "seqcls", num_labels=2)))
    model.add_adapter("a", config="seq_bn_inv[reduction_factor=4]")
    model.train_adapter("a")
    _perturbed(model)
    model.set_active_adapters("a", skip_layers=1)
    model(**inputs(), labels=torch.tensor([0, 1])).loss.backward()
    grads = {k for k, p in model.named_parameters() if p.grad is not None}
    assert any("invertible_adapters.a." in k for k in grads)  # it runs at the embeddings: not dropped
    assert not any(".layer.0." in k for k in grads) and any(".layer.1." in k for k in grads)


@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_prefix_tuning_drops_the_prefixes_of_skipped_layers(arch):
    model = adapterhub.init(make_model(arch, "seqcls", num_labels=2)).eval()
    base = _outputs(model)
    model.add_adapter("p", config="prefix_tuning[prefix_length=3]")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "prefix" in name:
                param.add_(torch.randn_like(param) * 0.5)
    model.set_active_adapters("p")
    both = _outputs(model)
    model.set_active_adapters("p", skip_layers=[0, 1])  # every layer dropped: the base model
    assert torch.equal(_outputs(model), base)
    model.set_active_adapters("p", skip_layers=1)
    lower_dropped = _outputs(model)
    assert not torch.allclose(lower_dropped, both) and not torch.allclose(lower_dropped, base)
    # dropping the upper layer instead gives yet another output
    model.set_active_adapters("p", skip_layers=[1])
    assert not torch.allclose(_outputs(model), lower_dropped)
