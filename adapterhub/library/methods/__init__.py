"""Adaptation methods: one self-contained sub-package per method, behind the interface in :mod:`.base`.

Adding a method: write ``methods/<method>/`` (its config classes, its :class:`~.base.Method` subclass and its
modules, registering them at import) and add the package's name to :data:`PACKAGES` below. Nothing else in the
library names a method. See the README section "How it works".
"""

from importlib import import_module

#: the method packages, imported (and so registered) on first use of the registry
PACKAGES = ("bottleneck", "lora", "prefix", "prompt", "reft", "vera", "union")

for _package in PACKAGES:
    import_module(f"{__name__}.{_package}")
