"""Small adapter trainings that run alone or as one process of a distributed run (``torchrun``): the plain loop
of adapterhub.training and transformers.Trainer on a tiny BERT. ``python -m torch.distributed.run
--nproc_per_node 2 tests/distributed_runs.py OUT`` trains both and the first process writes the trained weights
to OUT (used by test_distributed.py, which compares them with single-process runs)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))

import adapterhub  # noqa: E402
from adapterhub.training import TrainingArgs, train  # noqa: E402
from tiny_models import collate_examples, make_model, random_token_examples  # noqa: E402

STEPS = 4


def adapter_model():
    model = adapterhub.init(make_model("bert", "seqcls", seed=0, num_labels=2))
    model.add_adapter("a", config="seq_bn[reduction_factor=4]")
    model.train_adapter("a")
    for module in model.modules():  # dropout masks would differ between one process and two
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def trained(model) -> dict[str, torch.Tensor]:
    return {k: p.detach().cpu().clone().contiguous() for k, p in model.named_parameters() if p.requires_grad}


def plain_loop(batch_size: int):
    """The plain loop (adapterhub.training.train) for STEPS steps of ``batch_size`` examples (the global batch)."""
    model = adapter_model()
    examples = random_token_examples(40, seed=1)
    features = [{"input_ids": e["input_ids"]} for e in examples]
    labels = [e["labels"] for e in examples]
    args = TrainingArgs(learning_rate=5e-3, batch_size=batch_size, max_steps=STEPS, warmup=0.25, seed=3)
    result = train(model, features, labels, args)
    return model, result.losses


def trainer(per_device_batch_size: int, folder: Path):
    """transformers.Trainer for STEPS steps of ``per_device_batch_size`` examples per process."""
    from transformers import Trainer, TrainingArguments

    class Examples(torch.utils.data.Dataset):
        items = random_token_examples(48, seed=1)

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            return self.items[i]

    model = adapter_model()
    args = TrainingArguments(
        output_dir=str(folder),
        max_steps=STEPS,
        per_device_train_batch_size=per_device_batch_size,
        learning_rate=5e-3,
        warmup_steps=1,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        use_cpu=True,
        # Transformers multiplies the loss by the number of processes for models whose forward takes **kwargs,
        # for a token-count normalisation that classification heads do not do: off, so DDP averages mean losses
        average_tokens_across_devices=False,
        ddp_backend="gloo" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        seed=3,
        disable_tqdm=True,
    )
    run = Trainer(model=model, args=args, train_dataset=Examples(), data_collator=collate_examples)
    run.train()
    losses = [entry["loss"] for entry in run.state.log_history if "loss" in entry]
    return model, losses


if __name__ == "__main__":
    out = Path(sys.argv[1])
    torch.set_num_threads(1)
    plain, plain_losses = plain_loop(batch_size=7)  # 4 + 3 examples per step: uneven shares
    hf, hf_losses = trainer(per_device_batch_size=4, folder=out / "trainer")
    if torch.distributed.get_rank() == 0:
        save_file(trained(plain), str(out / "plain.safetensors"))
        save_file(trained(hf), str(out / "trainer.safetensors"))
        world = torch.distributed.get_world_size()
        (out / "losses.json").write_text(
            json.dumps({"plain": plain_losses, "trainer": hf_losses, "world": world})
        )
