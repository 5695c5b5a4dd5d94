"""The forward path is re-entrant: one model run from several threads at once gives the serial outputs."""

import threading

import pytest
import torch

import adapterhub
from tiny_models import inputs, make_model, output_of

# (config of adapter "a", config of adapter "b" or None, the active setup)
SETUPS = {
    "seq_bn": ("seq_bn", None, "a"),
    "seq_bn_no_ln_after": ("seq_bn[original_ln_after=False]", None, "a"),
    "par_bn+inv": ("seq_bn_inv", "par_bn", adapterhub.Stack("a", "b")),
    "fuse": ("seq_bn", "double_seq_bn", adapterhub.Fuse("a", "b")),
    "dora+seq_bn": ("dora[intermediate_lora=True]", "seq_bn", adapterhub.Stack("a", "b")),
    "ia3": (
        "ia3[target_modules='all-linear',feedforward_modules=['output.dense','c_proj','down_proj','lin2']]",
        None,
        "a",
    ),
}
THREADS = 4
ROUNDS = 6


def _perturb(model, seed=3):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in model.adapterhub_state.configs:
            for param in model.adapterhub_state.adapter_parameters(name).values():
                param.add_(torch.randn(param.shape, generator=generator) * 0.1)


def build(arch: str, setup: str):
    config_a, config_b, active = SETUPS[setup]
    model = adapterhub.init(make_model(arch))
    model.add_adapter("a", config=config_a)
    if config_b is not None:
        model.add_adapter("b", config=config_b)
    if isinstance(active, adapterhub.Fuse):
        model.add_adapter_fusion(active)
    _perturb(model)
    model.set_active_adapters(active)
    return model


def run_threads(model, batches) -> list[list[torch.Tensor]]:
    """Each thread runs its own batch ROUNDS times, all threads starting together."""
    barrier = threading.Barrier(len(batches))
    results: list[list[torch.Tensor]] = [[] for _ in batches]
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            barrier.wait()
            for _ in range(ROUNDS):
                results[index].append(output_of(model, batches[index]))
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("arch", ["bert", "distilbert", "gpt2", "llama"])
@pytest.mark.parametrize("setup", list(SETUPS))
def test_four_threads_on_one_model_equal_serial_outputs(arch, setup):
    model = build(arch, setup)
    # different inputs and lengths per thread, so that a value taken from another thread's call shows
    batches = [inputs(seed=10 + i, batch=2, length=5 + 2 * i) for i in range(THREADS)]
    serial = [output_of(model, batch) for batch in batches]
    torch.manual_seed(0)
    for index, outputs in enumerate(run_threads(model, batches)):
        for output in outputs:
            torch.testing.assert_close(output, serial[index], rtol=0, atol=1e-6)
