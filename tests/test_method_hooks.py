"""What the method interface promises of every method (methods/base.py): hooks only while an adapter is active, and
a deleted adapter leaves no weights behind, nor any module where it made the module (the holders of prefix and
prompt tuning and ReFT; bottleneck adapters keep their sites' empty containers)."""

import pytest
import torch
from torch import nn

import adapterhub
from adapterhub.library.methods.base import Hooks
from adapterhub.library.paths import add_container, get_or_create_module, remove_from_container
from tiny_models import inputs, make_model, output_of

BOTTLENECK = {"seq_bn", "unipelt"}
CASES = [
    ("bert", "seq_bn"),
    ("bert", "lora[intermediate_lora=True]"),
    ("bert", "ia3"),
    ("bert", "vera[r=4]"),
    ("bert", "prefix_tuning[prefix_length=3,bottleneck_size=8,use_gating=True]"),
    ("bert", "prompt_tuning[prompt_length=3]"),
    ("bert", "loreft[r=2]"),
    ("llama", "prefix_tuning_flat[prefix_length=3,use_gating=True]"),
    ("llama", "prompt_tuning[prompt_length=3,input_embeddings=True]"),
    ("llama", "unipelt"),
]


def _hooks(model: nn.Module) -> dict[str, int]:
    return {
        name: len(m._forward_hooks) + len(m._forward_pre_hooks)
        for name, m in model.named_modules()
        if m._forward_hooks or m._forward_pre_hooks
    }


@pytest.mark.parametrize("arch, config", CASES)
def test_hooks_come_and_go_with_activation_and_delete_leaves_no_module(arch, config):
    model = adapterhub.init(make_model(arch))
    modules, hooks = set(dict(model.named_modules())), _hooks(model)
    batch = inputs()
    reference = output_of(model, batch)
    model.add_adapter("a", config=config)
    model.add_adapter("b", config=config)
    assert _hooks(model) == hooks  # added, inactive: no hook
    model.set_active_adapters("a")
    assert _hooks(model) != hooks
    model.set_active_adapters("b")  # the hooks of "a" go when "b" takes its place
    active = _hooks(model)
    model.delete_adapter("a")
    assert _hooks(model) == active
    model.delete_adapter("b")  # the active adapter: deactivated, then deleted
    assert _hooks(model) == hooks
    left = set(dict(model.named_modules())) - modules
    assert not any(p for name in left for p in model.get_submodule(name).parameters())
    assert config in BOTTLENECK or not left
    assert torch.equal(output_of(model, batch), reference)


def test_hooks_remove_every_handle_they_keep():
    module = nn.Linear(2, 2)
    hooks = Hooks()
    hooks.add(module.register_forward_hook(lambda m, args, out: out * 0))
    hooks.add(module.register_forward_pre_hook(lambda m, args: None))
    assert not module(torch.ones(1, 2)).any()
    hooks.clear()
    assert not module._forward_hooks and not module._forward_pre_hooks
    hooks.clear()  # nothing left to remove


def test_remove_from_container_drops_emptied_containers_and_holders_only():
    parent = nn.Module()
    add_container(get_or_create_module(parent, "holder"), "items")["a"] = nn.Linear(1, 1)
    add_container(parent.holder, "other")["a"] = nn.Linear(1, 1)
    parent.holder.items["b"] = nn.Linear(1, 1)
    remove_from_container(parent, "holder", "items", "a")
    assert list(parent.holder.items) == ["b"]
    remove_from_container(parent, "holder", "items", "b")
    assert "items" not in parent.holder._modules and list(parent.holder.other) == [
        "a"
    ]  # the holder still holds
    remove_from_container(parent, "holder", "items", "b")  # absent: no error
    remove_from_container(parent, "holder", "other", "a")
    assert "holder" not in parent._modules
    remove_from_container(parent, "holder", "other", "a")


# bottleneck layers are built as torch builds linear layers (drawing from the global generator) before their seeded
# initialisation overwrites them: with them only the seeded weights are checked
DRAW_WHEN_BUILT = {"seq_bn", "compacter[reduction_factor=4]"}


@pytest.mark.parametrize(
    "preset", ["seq_bn", "compacter[reduction_factor=4]", "lora", "prefix_tuning", "prompt_tuning", "loreft"]
)
def test_init_weights_seed_fixes_the_weights_and_leaves_the_global_generator(preset):
    model = adapterhub.init(make_model("bert"))
    config = adapterhub.resolve_config(preset)

    def weights(name):
        return list(model.adapterhub_state.adapter_parameters(name).values())

    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    model.add_adapter("a", config=config.replace(init_weights_seed=3))
    model.add_adapter("b", config=config.replace(init_weights_seed=3))
    assert preset in DRAW_WHEN_BUILT or torch.equal(torch.random.get_rng_state(), before)
    assert all(torch.equal(x, y) for x, y in zip(weights("a"), weights("b")))
    model.add_adapter("c", config=config)  # unseeded: drawn from the global generator, which moves on
    model.add_adapter("d", config=config)
    assert not torch.equal(torch.random.get_rng_state(), before)
    assert any(not torch.equal(x, y) for x, y in zip(weights("c"), weights("d")))
    assert any(not torch.equal(x, y) for x, y in zip(weights("a"), weights("c")))
