"""The peer side of the harness: the `adapters` library 1.3 with transformers 4.57 (in .venv-adapters)."""

from __future__ import annotations

import adapters
import transformers
from adapters import AutoAdapterModel
from adapters.composition import Fuse, Stack

from common import AUTO
from side import Library, main


class Peer(Library):
    name = "peer"
    blocks = {"Stack": Stack, "Fuse": Fuse}

    def build(self, case, models):
        if case["kind"] == "flex":
            return AutoAdapterModel.from_pretrained(
                models / case["arch"] / "base", attn_implementation="eager"
            )
        cls = getattr(transformers, AUTO[case["kind"]])
        model = cls.from_pretrained(models / case["arch"] / case["kind"], attn_implementation="eager")
        adapters.init(model)
        return model

    def save(self, model, case, folder):
        safe = case["format"] == "safetensors"
        if case["save"] == "adapter":
            model.save_adapter(str(folder), case["adapters"][0][0], use_safetensors=safe)
        elif case["save"] == "setup":
            model.save_adapter_setup(str(folder), self.setup(case["setup"]), use_safetensors=safe)
        else:
            model.save_pretrained(str(folder), safe_serialization=safe)

    def load(self, case, models, folder):
        safe = case["format"] == "safetensors"
        if case["save"] == "checkpoint":
            model = AutoAdapterModel.from_pretrained(str(folder), attn_implementation="eager")
        else:
            model = self.build(case, models)
            if case["save"] == "adapter":
                model.load_adapter(str(folder), use_safetensors=safe)
            else:
                model.load_adapter_setup(str(folder), use_safetensors=safe)
        self.activate(model, case)
        return model


if __name__ == "__main__":
    main(Peer())
