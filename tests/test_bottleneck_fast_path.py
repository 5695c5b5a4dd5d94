"""The bottleneck's fast path, checked to be taken and to compute what the general path computes: ``seq_bn``
alone at a post-LN site runs from one hook on the host's norm (no residual capture, no output hook); every other
setup captures the residual stream and replaces the sub-layer output.
"""

import pytest
import torch

import adapterhub
from tiny_models import ARCHS, DECODERS, inputs, make_model, model_with_adapter, output_of

POST_LN = sorted(set(ARCHS) - DECODERS)  # families whose sites name the norm the layer applies to h + r


def _sites(model, name="a"):
    return [s for s in model.adapterhub_state.methods["bottleneck"].sites if name in s.adapters]


def _hooks(site) -> tuple[int, int, int]:
    """(pre-hooks on the residual module, forward hooks on the sub-layer, forward hooks on the norm)."""
    norm_hooks = len(site.norm._forward_hooks) if site.norm is not None else 0
    return len(site.residual_module._forward_pre_hooks), len(site.output_module._forward_hooks), norm_hooks


def _general_path(model) -> None:
    """Switch the fast path off and activate again: the per-site hooks and maths of the general path."""
    for site in model.adapterhub_state.methods["bottleneck"].sites:
        for adapter in site.adapters.values():
            adapter.takes_normed_sum = False
    model.set_active_adapters(model.active_adapters)


@pytest.mark.parametrize("arch", POST_LN)
@pytest.mark.parametrize(
    "config, one_hook",
    [
        ("seq_bn", True),
        ("seq_bn[mh_adapter=True]", True),
        ("seq_bn[ln_after=True]", True),
        ("seq_bn[use_gating=True]", True),
        ("seq_bn[scaling=0.5]", True),
        ("compacter++[reduction_factor=4]", True),
        # LN_after(f + h) + r is not a function of h + r: the general hooks
        ("seq_bn[ln_after=True,adapter_residual_before_ln=True]", False),
        ("seq_bn[residual_before_ln=False]", False),
        ("double_seq_bn", False),
        ("par_bn", False),
    ],
)
def test_each_config_takes_its_path_and_computes_the_general_paths_result(arch, config, one_hook):
    model = model_with_adapter(arch, config)
    batch = inputs()
    reference = output_of(model, batch)
    model.set_active_adapters("a")
    sites = _sites(model)
    assert sites and all((_hooks(site) == (0, 0, 1)) == one_hook for site in sites)
    fast = output_of(model, batch)
    assert not torch.allclose(fast, reference)

    _general_path(model)
    assert all(_hooks(site)[:2] == (1, 1) for site in sites)
    general = output_of(model, batch)
    torch.testing.assert_close(fast, general, rtol=0, atol=1e-6)


@pytest.mark.parametrize("arch", ["bert", "distilbert", "gpt2", "llama"])
def test_fast_paths_give_the_gradients_of_the_general_path(arch):
    model = model_with_adapter(arch, "seq_bn[mh_adapter=True]", kind="seqcls")
    model.train_adapter("a")
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    labels = torch.tensor([0, 1])

    def gradients():
        model.zero_grad()
        model(**inputs(), labels=labels).loss.backward()
        return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    fast = gradients()
    _general_path(model)
    general = gradients()
    assert set(fast) == set(general) and any(".adapters.a." in k for k in fast)
    for key in fast:
        torch.testing.assert_close(fast[key], general[key], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch", ARCHS)
def test_only_a_lone_seq_bn_at_a_post_ln_site_runs_from_the_norm(arch):
    model = adapterhub.init(make_model(arch))
    model.add_adapter("houlsby", config="double_seq_bn")
    model.add_adapter("parallel", config="par_bn")
    model.add_adapter("pfeiffer", config="seq_bn")
    for setup, name in [
        ("houlsby", "houlsby"),
        ("parallel", "parallel"),
        (adapterhub.Stack("houlsby", "pfeiffer"), "pfeiffer"),
    ]:
        model.set_active_adapters(setup)  # the general hooks: r captured, the sub-layer output replaced
        assert all(_hooks(site)[:2] == (1, 1) for site in _sites(model, name))
    model.set_active_adapters("pfeiffer")
    expected = (0, 0, 1) if arch not in DECODERS else (1, 1, 0)  # a pre-LN site has no norm after the add
    assert all(_hooks(site) == expected for site in _sites(model, "pfeiffer"))
    model.set_active_adapters(None)
    assert all(_hooks(site) == (0, 0, 0) for site in _sites(model, "pfeiffer"))
