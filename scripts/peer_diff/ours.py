"""The adapterhub side of the harness (runs in the project's virtual environment)."""

from __future__ import annotations

import sys
from pathlib import Path

import transformers

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's adapterhub

import adapterhub  # noqa: E402
from common import AUTO  # noqa: E402
from side import Library, main  # noqa: E402


class Ours(Library):
    name = "ours"
    blocks = {"Stack": adapterhub.Stack, "Fuse": adapterhub.Fuse}

    def build(self, case, models):
        if case["kind"] == "flex":
            return adapterhub.AdapterModel.from_pretrained(
                models / case["arch"] / "base", attn_implementation="eager"
            )
        cls = getattr(transformers, AUTO[case["kind"]])
        model = cls.from_pretrained(models / case["arch"] / case["kind"], attn_implementation="eager")
        return adapterhub.init(model)

    def save(self, model, case, folder):
        safe = case["format"] == "safetensors"
        if case["save"] == "adapter":
            model.save_adapter(folder, case["adapters"][0][0], use_safetensors=safe)
        elif case["save"] == "setup":
            model.save_adapter_setup(folder, self.setup(case["setup"]), use_safetensors=safe)
        else:
            model.save_pretrained(folder, use_safetensors=safe)

    def load(self, case, models, folder):
        if case["save"] == "checkpoint":
            model = adapterhub.AdapterModel.from_pretrained(folder, attn_implementation="eager")
        else:
            model = self.build(case, models)
            if case["save"] == "adapter":
                model.load_adapter(folder)
            else:
                model.load_adapter_setup(folder)
        self.activate(model, case)
        return model


if __name__ == "__main__":
    main(Ours())
