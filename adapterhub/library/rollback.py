"""All or nothing: a change of a model's adapters that fails leaves the model as it was.

``with all_or_nothing(state): ...`` records the module tree (every module's child dict), the adapter
bookkeeping (configs, active and training setups, each method's own attributes) and, on an exception, puts
them back and re-applies the active setup. Modules that the failed change removed come back as the same
objects, with their weights; modules it added are dropped. Parameter values are not recorded: a change that
copies weights into existing modules must check everything first (as ``load_adapter`` does).
"""

from __future__ import annotations

import contextlib
import copy


def _method_attributes(method) -> dict:
    # one level deep: containers (lists of sites, dicts of fusions) are copied, the objects in them shared
    return {k: copy.copy(v) if isinstance(v, (list, dict, set)) else v for k, v in vars(method).items()}


@contextlib.contextmanager
def all_or_nothing(state):
    modules = [(module, dict(module._modules)) for module in state.model.modules()]
    configs, methods = dict(state.configs), dict(state.methods)
    attributes = {id(m): _method_attributes(m) for m in methods.values()}
    active, training = state.active, state.training
    try:
        yield
    except BaseException:
        from .model import _apply_active

        state.active = None
        _apply_active(state)  # removes every hook, also those of sites that the failed change made
        for module, children in modules:
            module._modules.clear()
            module._modules.update(children)
        state.configs.clear()
        state.configs.update(configs)
        state.methods.clear()
        state.methods.update(methods)
        for method in methods.values():
            vars(method).clear()
            vars(method).update(attributes[id(method)])
        state.active, state.training = active, training
        _apply_active(state)
        raise
