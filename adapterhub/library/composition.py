"""Adapter setups: which adapters are active and how they combine.

* ``Stack("a", "b")`` runs ``a`` then ``b`` at every site. A plain name or a list of names means a Stack.
* ``Fuse("a", "b")`` runs ``a`` and ``b`` side by side on the same input and mixes their up-projections with
  an AdapterFusion layer (added with ``model.add_adapter_fusion``). A Fuse may stand alone or as a child of a
  Stack: ``Stack("lang", Fuse("a", "b"))``.

Setups serialise to the ``adapter_setup.json`` form of the AdapterHub format (:meth:`Block.to_dict`).
"""

from __future__ import annotations

from typing import Any, Iterable, Union

from .errors import AdapterConfigError


class Block:
    """A composition block: an ordered list of children (adapter names or nested blocks)."""

    allowed_children: tuple = (str,)

    def __init__(self, *children):
        kind = type(self).__name__
        if not children:
            raise AdapterConfigError(f"{kind} takes one or more adapter names, got none")
        for child in children:
            if not isinstance(child, self.allowed_children):
                allowed = ", ".join(
                    "adapter names" if c is str else c.__name__ for c in self.allowed_children
                )
                raise AdapterConfigError(f"{kind} takes {allowed} as children, got {child!r}")
        self.children = list(children)

    def names(self) -> list[str]:
        """Every adapter name in the setup, in order, each once."""
        out: list[str] = []
        for child in self.children:
            for name in [child] if isinstance(child, str) else child.names():
                if name not in out:
                    out.append(name)
        return out

    def first(self) -> str:
        child = self.children[0]
        return child if isinstance(child, str) else child.first()

    def last(self) -> str:
        child = self.children[-1]
        return child if isinstance(child, str) else child.last()

    def fuse_blocks(self) -> list["Fuse"]:
        """The Fuse blocks of the setup (itself included)."""
        own = [self] if isinstance(self, Fuse) else []
        return own + [b for c in self.children if isinstance(c, Block) for b in c.fuse_blocks()]

    def without(self, name: str) -> "Block | None":
        """The setup with adapter ``name`` removed; a Fuse that contains it is removed whole. ``None`` if empty."""
        if isinstance(self, Fuse) and name in self.names():
            return None
        rest = []
        for child in self.children:
            if isinstance(child, str):
                if child != name:
                    rest.append(child)
            else:
                kept = child.without(name)
                if kept is not None:
                    rest.append(kept)
        return type(self)(*rest, **self._kwargs()) if rest else None

    def _kwargs(self) -> dict:
        return {}

    def to_dict(self) -> dict:
        """The ``adapter_setup.json`` form: ``{"type": ..., "children": [{"type": "single", ...}, ...]}``."""
        data: dict[str, Any] = {
            "type": type(self).__name__,
            "children": [
                c.to_dict() if isinstance(c, Block) else {"type": "single", "children": [c]}
                for c in self.children
            ],
        }
        if self._kwargs():
            data["kwargs"] = self._kwargs()
        return data

    @staticmethod
    def from_dict(data) -> "Block":
        if not isinstance(data, dict) or "type" not in data or not isinstance(data.get("children"), list):
            raise AdapterConfigError(
                f"an adapter setup entry needs 'type' and a 'children' list, got {data!r}"
            )
        kind = data["type"]
        if kind not in _BLOCKS:
            raise AdapterConfigError(
                f"unsupported composition block {kind!r} in adapter setup; supported: {', '.join(_BLOCKS)}"
            )
        children: list[str | Block] = []
        for child in data["children"]:
            if isinstance(child, dict) and child.get("type") == "single":
                if len(child.get("children") or []) != 1 or not isinstance(child["children"][0], str):
                    raise AdapterConfigError(
                        f"a 'single' setup entry must name exactly one adapter, got {child!r}"
                    )
                children.append(child["children"][0])
            elif isinstance(child, str):
                children.append(child)
            else:
                children.append(Block.from_dict(child))
        return _BLOCKS[kind](*children, **(data.get("kwargs") or {}))

    def __iter__(self):
        return iter(self.children)

    def __len__(self) -> int:
        return len(self.children)

    def __getitem__(self, index):
        return self.children[index]

    def __contains__(self, name: object) -> bool:
        return name in self.names()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Block):
            return (
                type(self) is type(other)
                and self.children == other.children
                and self._kwargs() == other._kwargs()
            )
        if isinstance(self, Stack) and isinstance(other, str):
            return self.children == [other]
        if isinstance(self, Stack) and isinstance(other, list):
            return self.children == other
        if isinstance(self, Stack) and isinstance(other, tuple) and len(other) != 1:
            return self.children == list(other)  # not ("a",): Stack("a") equals "a", so hashes as "a"
        return NotImplemented

    def __hash__(self) -> int:
        # equal objects hash equally: a Stack equals its single name or the tuple of its names (see __eq__)
        if isinstance(self, Stack) and all(isinstance(c, str) for c in self.children):
            return hash(self.children[0]) if len(self.children) == 1 else hash(tuple(self.children))
        return hash((type(self).__name__, tuple(self.children), tuple(sorted(self._kwargs().items()))))

    def __repr__(self) -> str:
        return f"{type(self).__name__}[{', '.join(map(str, self.children))}]"


class Fuse(Block):
    """AdapterFusion over the given adapters. A child may be a Stack of adapter names: it runs as a stack and
    its last adapter's up-projection is fused (``Fuse(Stack("a", "b"), "c")`` fuses ``b`` after ``a`` with ``c``).
    ``name`` defaults to the (last) names joined by commas (``"a,b"``; ``"b,c"`` in the example)."""

    def __init__(self, *children, name: str | None = None):
        super().__init__(*children)
        nested = [c for c in children if isinstance(c, Block) and not all(isinstance(n, str) for n in c)]
        if nested:
            raise AdapterConfigError(f"a Stack inside a Fuse takes adapter names only, got {nested[0]!r}")
        if name is not None and (not isinstance(name, str) or not name or "." in name):
            raise AdapterConfigError(f"invalid fusion name {name!r}: a non-empty string without '.'")
        self._name = name

    @property
    def name(self) -> str:
        return self._name or ",".join(self.fused())

    def fused(self) -> list[str]:
        """The adapters whose up-projections the fusion layer mixes: each child's (last) adapter."""
        return [c if isinstance(c, str) else c.last() for c in self.children]

    def _kwargs(self) -> dict:
        return {"name": self._name} if self._name else {}


class Stack(Block):
    """Adapters applied one after another; a child may be a :class:`Fuse`. A nested Stack is flattened (it
    computes the same as its children in line)."""

    allowed_children = (str, Fuse)

    def __init__(self, *children):
        flat = []
        for child in children:
            flat += child.children if isinstance(child, Stack) else [child]
        super().__init__(*flat)


Fuse.allowed_children = (str, Stack)
_BLOCKS = {"Stack": Stack, "Fuse": Fuse}

Setup = Union[str, Iterable[str], Block, None]


def parse_setup(setup: Setup) -> Block | None:
    """A name or a list of names becomes a Stack; Stack and Fuse blocks are kept; ``None`` deactivates."""
    if setup is None:
        return None
    if isinstance(setup, Block):
        return setup
    if isinstance(setup, str):
        return Stack(setup)
    if isinstance(setup, (list, tuple)):
        return Stack(*setup) if setup else None
    raise AdapterConfigError(
        f"an adapter setup must be a name, a list of names, a Stack or a Fuse, not {type(setup).__name__}"
    )
