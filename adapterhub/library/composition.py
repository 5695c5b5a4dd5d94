"""Adapter setups: which adapters are active and how they combine.

``Stack("a", "b")`` runs ``a`` then ``b`` at every site. A plain name or a list of names means a Stack.
"""

from __future__ import annotations

from typing import Iterable, Union

from .errors import AdapterConfigError


class Stack:
    def __init__(self, *children: str):
        if not children or not all(isinstance(c, str) for c in children):
            raise AdapterConfigError(f"Stack takes one or more adapter names, got {children!r}")
        self.children = list(children)

    def names(self) -> list[str]:
        return list(self.children)

    def first(self) -> str:
        return self.children[0]

    def __iter__(self):
        return iter(self.children)

    def __len__(self) -> int:
        return len(self.children)

    def __contains__(self, name: object) -> bool:
        return name in self.children

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Stack):
            return self.children == other.children
        if isinstance(other, str):
            return self.children == [other]
        if isinstance(other, (list, tuple)):
            return self.children == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"Stack[{', '.join(self.children)}]"


Setup = Union[str, Iterable[str], Stack, None]


def parse_setup(setup: Setup) -> Stack | None:
    if setup is None:
        return None
    if isinstance(setup, Stack):
        return setup
    if isinstance(setup, str):
        return Stack(setup)
    if isinstance(setup, (list, tuple)):
        return Stack(*setup) if setup else None
    raise AdapterConfigError(
        f"an adapter setup must be a name, a list of names or a Stack, not {type(setup).__name__}"
    )
