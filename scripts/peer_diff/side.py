"""One side of the harness: the steps every case goes through, for a library given as a :class:`Library`.

``own``: build the model, add the case's adapters (fusions, heads), activate the setup, randomise every adapter
and head weight, save it (``WORK/cases/ID/<side>_saved``), and record outputs and gradients
(``<side>_own``). ``load``: load what the other side saved into a fresh model and record the same
(``<side>_loaded``). Errors are recorded per case, never raised.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

import torch

from common import build_base_models, forward_backward, randomise, write_result


_HEAD_ADDERS = {
    "classification": "add_classification_head",
    "multilabel_classification": "add_multilabel_classification_head",
    "tagging": "add_tagging_head",
    "masked_lm": "add_masked_lm_head",
    "causal_lm": "add_causal_lm_head",
}


class Library:
    """What a side implements (see ours.py and peer.py); the model API calls are the same in both libraries."""

    name = ""
    blocks: dict = {}  # "Stack" / "Fuse" -> the library's composition block classes

    def build(self, case: dict, models: Path): ...

    def save(self, model, case: dict, folder: Path) -> None: ...

    def load(self, case: dict, models: Path, folder: Path): ...

    def setup(self, spec):
        if isinstance(spec, str):
            return spec
        return self.blocks[spec[0]](*(self.setup(child) for child in spec[1:]))

    def add(self, model, case: dict) -> None:
        for name, config in case["adapters"]:
            model.add_adapter(name, config=config)
        for names, config in case["fusions"]:
            model.add_adapter_fusion(names, config=config)
        for name, head_type, options in case["heads"]:
            getattr(model, _HEAD_ADDERS[head_type])(name, **options)
        self.activate(model, case)

    def activate(self, model, case: dict) -> None:
        model.set_active_adapters(self.setup(case["setup"]))
        if case["heads"]:
            model.active_head = case["heads"][0][0]

    def static_head_prefix(self, model, case: dict) -> str | None:
        return model.base_model_prefix + "." if case["kind"] == "seqcls" else None


def _error() -> str:
    lines = traceback.format_exc().strip().splitlines()
    return lines[-1][:2000]


def own(lib: Library, case_id: str, case: dict, work: Path) -> None:
    folder = work / "cases" / case_id
    try:
        torch.manual_seed(0)
        model = lib.build(case, work / "models")
        lib.add(model, case)
        randomise(model, seed=3, static_head_prefix=lib.static_head_prefix(model, case))
        lib.save(model, case, folder / f"{lib.name}_saved")
        result = forward_backward(
            model, case["arch"], case.get("train_steps", 0), case.get("padding", "right")
        )
    except Exception:
        write_result(folder / f"{lib.name}_own", None, _error())
        return
    write_result(folder / f"{lib.name}_own", result)


def load(lib: Library, case_id: str, case: dict, work: Path, source: str) -> None:
    folder = work / "cases" / case_id
    if not (folder / f"{source}_saved").is_dir():
        return
    try:
        torch.manual_seed(0)
        model = lib.load(case, work / "models", folder / f"{source}_saved")
        result = forward_backward(
            model, case["arch"], case.get("train_steps", 0), case.get("padding", "right")
        )
    except Exception:
        write_result(folder / f"{lib.name}_loaded", None, _error())
        return
    write_result(folder / f"{lib.name}_loaded", result)


def main(lib: Library) -> None:
    """``python ours.py|peer.py WORK STEP...`` with steps ``models`` (build the base checkpoints), ``own`` and
    ``load:<other side>``."""
    work = Path(sys.argv[1])
    cases = json.loads((work / "cases.json").read_text())
    for step in sys.argv[2:]:
        if step == "models":
            build_base_models(work / "models")
            continue
        for case_id, case in cases.items():
            if step == "own":
                own(lib, case_id, case, work)
            else:
                load(lib, case_id, case, work, step.split(":", 1)[1])
