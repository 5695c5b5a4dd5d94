"""Metadata extraction for the hub index, on the real files saved by `adapters` 1.3.0 and PEFT 0.21.2, and
the import of the legacy AdapterHub index (taxonomy and 291 metadata-only cards)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from adapterhub.server.index import (
    FileInfo,
    extract_metadata,
    parse_front_matter,
    safetensors_num_params,
)

SHARED = Path(__file__).resolve().parents[3] / "shared"
INTEROP = SHARED / "fixtures" / "interop"
LEGACY = SHARED / "data" / "adapterhub-index"

pytestmark = pytest.mark.skipif(not INTEROP.is_dir(), reason="../shared/fixtures/interop is missing")


def extract_folder(folder: Path, extra: dict[str, bytes] | None = None):
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    files.update(extra or {})
    infos = [FileInfo(k, len(v)) for k, v in files.items()]
    return extract_metadata(infos, files, read_header=lambda p: files[p][: 1 << 16])


def test_adapterhub_seq_bn_with_flex_head():
    m = extract_folder(INTEROP / "bert/adapters/seq_bn-flexhead/safetensors")
    assert m.is_adapter and m.library == "adapters"
    assert m.method == "seq_bn" and m.method_family == "bottleneck"
    assert m.hyperparams["reduction_factor"] == 16 and m.hyperparams["non_linearity"] == "relu"
    assert m.config_hash == "9076f36a74755ac4"  # the verified hash of seq_bn (formats.md)
    assert m.model_type == "bert" and m.model_class == "BertAdapterModel" and m.hidden_size == 32
    assert m.base_model is None  # "model_name": "" in the file
    assert m.head_type == "classification" and m.num_labels == 3
    assert m.labels == ["LABEL_0", "LABEL_1", "LABEL_2"]
    assert m.adapter_name == "fx_seq_bn"
    sizes = sum(p.stat().st_size for p in (INTEROP / "bert/adapters/seq_bn-flexhead/safetensors").iterdir())
    assert m.size_bytes == sizes
    # 2 layers x (down 2x32 + 2, up 32x2 + 32) = 2 x 162, plus the head 32x32+32 + 3x32+3 = 1155
    assert m.num_params == 2 * 162 + 1155 and m.head_params == 1155


def test_adapterhub_lora_with_static_head_and_hash():
    m = extract_folder(INTEROP / "bert/adapters/lora-seqcls/safetensors")
    assert (m.method, m.method_family) == ("lora", "lora")
    assert (
        m.hyperparams["r"] == 8
        and m.hyperparams["alpha"] == 16
        and m.hyperparams["attn_matrices"] == ["q", "v"]
    )
    # static HF head: head_config.json has config=null and label2id at the top level
    assert m.head_type == "classification" and m.labels == ["LABEL_0", "LABEL_1", "LABEL_2"]
    # alpha 16 differs from the preset, so the hash is not the `lora` preset's one
    assert m.config_hash and m.config_hash != "625403edad0bf919"


@pytest.mark.parametrize(
    "fixture, method, family",
    [
        ("double_seq_bn", "double_seq_bn", "bottleneck"),
        ("par_bn", "par_bn", "bottleneck"),
        ("scaled_par_bn", "scaled_par_bn", "bottleneck"),
        ("seq_bn_inv", "seq_bn_inv", "bottleneck"),
        ("compacter-seqcls", "compacter", "bottleneck"),
        ("ia3", "ia3", "lora"),
        ("prompt_tuning", "prompt_tuning", "prompt"),
    ],
)
def test_adapterhub_methods(fixture, method, family):
    m = extract_folder(INTEROP / "bert/adapters" / fixture / "safetensors")
    assert (m.method, m.method_family) == (method, family)
    assert len(m.config_hash) == 16 and m.warnings == []


def test_vera_method_and_hyperparameters(tmp_path):
    import adapterhub
    from tiny_models import make_model

    model = adapterhub.init(make_model("bert"))
    model.add_adapter("a", config="vera[r=16,projection_prng_key=7]")
    model.save_adapter(tmp_path, "a")
    m = extract_folder(tmp_path)
    assert (m.library, m.method, m.method_family) == ("adapters", "vera", "lora")
    assert m.hyperparams == {"r": 16, "projection_prng_key": 7, "d_initial": 0.1, "dropout": 0.0}
    assert m.num_params == 2 * 2 * (32 + 16)  # the vectors only: lambda_b [32] and lambda_d [16] on q and v


def test_prefix_tuning_bin_only_counts_no_params_but_size():
    m = extract_folder(INTEROP / "bert/adapters/prefix_tuning/bin")
    assert m.method == "prefix_tuning" and m.hyperparams["prefix_length"] > 0
    assert m.num_params is None and m.weights_bytes > 0


def test_peft_lora_seqcls():
    m = extract_folder(INTEROP / "bert/peft/lora_qv-seqcls")
    assert m.library == "peft" and m.method == "lora" and m.method_family == "lora"
    assert m.hyperparams["r"] == 8 and m.hyperparams["lora_alpha"] == 16
    assert m.hyperparams["target_modules"] == ["query", "value"]  # sorted: PEFT writes a set
    assert m.head_type == "classification"  # task_type SEQ_CLS
    assert m.config_hash is None  # PEFT configs have no AdapterHub hash
    assert m.base_model is None  # base_model_name_or_path null, card base_model ''
    assert "lora" in m.tags and m.card["library_name"] == "peft"
    # LoRA on query and value of 2 layers: 4 x (8x32 + 32x8); the classifier (modules_to_save) 3x32 + 3;
    # the fixture folder's expected.safetensors (reference outputs) counts too
    assert m.head_params == 99 and m.num_params > 4 * 512 + 99


@pytest.mark.parametrize(
    "fixture, method", [("ia3", "ia3"), ("prefix_tuning", "prefix_tuning"), ("lora_all_linear", "lora")]
)
def test_peft_methods(fixture, method):
    m = extract_folder(INTEROP / "bert/peft" / fixture)
    assert m.method == method and m.library == "peft"
    if method == "ia3":
        assert m.hyperparams["feedforward_modules"] == ["output.dense"]
        assert m.model_class == "BertModel" and m.head_type is None and m.model_type == "bert"  # auto_mapping
    if method == "prefix_tuning":
        assert m.hyperparams["num_virtual_tokens"] == 8 and m.method_family == "prefix"


def test_card_front_matter_fills_task_language_license_metrics():
    card = """---
base_model: bert-base-uncased
base_model_revision: 86b5e0934494bd15c9632b12f734a8a67f723594
language: [English, de]
license: apache-2.0
tags:
- adapter-transformers
- adapterhub:sentiment/sst-2
model-index:
- name: x
  results:
  - task: {type: text-classification}
    dataset: {name: SST-2, type: sst2}
    metrics:
    - {type: accuracy, value: 0.91}
---
# My adapter

<!-- a comment -->
A bottleneck adapter for sentiment, trained on SST-2.

More text.
""".encode()
    peft_cfg = (INTEROP / "bert/peft/lora_qv/adapter_config.json").read_bytes()
    files = {"adapter_config.json": peft_cfg, "README.md": card}
    m = extract_metadata([FileInfo(k, len(v)) for k, v in files.items()], files)
    assert m.base_model == "bert-base-uncased"
    assert m.base_model_revision == "86b5e0934494bd15c9632b12f734a8a67f723594"
    assert (m.task, m.subtask) == ("sentiment", "sst-2")
    assert m.language == "en" and m.languages == ["en", "de"]
    assert m.license == "apache-2.0" and m.metrics == {"accuracy": 0.91}
    assert m.description == "A bottleneck adapter for sentiment, trained on SST-2."


def test_bad_inputs_are_warnings_not_errors():
    files = {"adapter_config.json": b"{not json", "README.md": b"---\n: [\n---\nbody"}
    m = extract_metadata([FileInfo(k, len(v)) for k, v in files.items()], files)
    assert not m.is_adapter and any("not valid JSON" in w for w in m.warnings)
    assert parse_front_matter("no front matter") == ({}, "no front matter")
    files = {"adapter_config.json": json.dumps({"hello": 1}).encode()}
    m = extract_metadata([FileInfo("adapter_config.json", 11)], files)
    assert not m.is_adapter and "neither an AdapterHub" in m.warnings[0]
    assert safetensors_num_params(b"\x00" * 4) is None


def test_composition_folder_picks_first_adapter_and_lists_others():
    m = extract_folder(INTEROP / "bert/adapters/fuse_seq_bn/safetensors")
    assert m.config_path == "fx_a/adapter_config.json" and m.sub_adapters == ["fx_b"]
    assert m.method == "seq_bn"


# ------------------------------------------------------------------------------------------ legacy index
@pytest.mark.skipif(not LEGACY.is_dir(), reason="../shared/data/adapterhub-index is missing")
def test_taxonomy_and_legacy_cards_import(index_db):
    from sqlalchemy import func, select

    from adapterhub.server.index_models import IndexEntry, TaxonomyLanguage, TaxonomySubtask, TaxonomyTask
    from adapterhub.server.taxonomy import seed

    with index_db.session() as s:
        report = seed(s, LEGACY)
    assert (report.tasks, report.subtasks, report.adapters) == (123, 188, 291)
    with index_db.session() as s:
        assert seed(s, LEGACY) is None  # idempotent: already seeded
        report2 = seed(s, LEGACY, force=True)
        assert report2.adapters == 291
    with index_db.session() as s:
        count = lambda m: s.scalar(select(func.count()).select_from(m))  # noqa: E731
        assert count(TaxonomyTask) == 123 and count(TaxonomySubtask) == 188
        assert count(IndexEntry) == 291
        assert s.get(TaxonomyTask, "sentiment").displayname == "Sentiment Analysis"
        assert s.get(TaxonomyTask, "text-classification") is not None  # stray quote in the file removed
        assert s.get(TaxonomyLanguage, "ru").name == "Russian"
        assert s.get(TaxonomyLanguage, "en") is not None
        sst = s.scalar(
            select(TaxonomySubtask).where(
                TaxonomySubtask.task == "sentiment", TaxonomySubtask.name == "sst-2"
            )
        )
        assert sst.language == "en" and sst.metric == "accuracy"
        e = s.scalar(
            select(IndexEntry).where(IndexEntry.full_name == "ukp/bert-base-uncased_sentiment_sst-2_pfeiffer")
        )
        assert e.source == "legacy" and e.downloadable is False
        assert e.config_hash == "9076f36a74755ac4" and e.method == "seq_bn"
        assert (e.task, e.subtask, e.language, e.base_model) == (
            "sentiment",
            "sst-2",
            "en",
            "bert-base-uncased",
        )
        assert "cannot be downloaded" in e.data["note"]
        assert [v.version for v in e.versions] == ["1"] and e.versions[0].data["sha256"]
        lang = s.scalar(
            select(IndexEntry).where(
                IndexEntry.full_name == "ukp/bert-base-multilingual-cased-ar-wiki_houlsby"
            )
        )
        assert lang.adapter_type == "text_lang" and lang.language == "ar" and lang.method == "double_seq_bn"
        assert lang.data["config"]["reduction_factor"] == 2 and lang.data["config"]["non_linearity"] == "gelu"
        assert sorted(v.version for v in lang.versions) == ["nd", "wd"] and lang.revision == "nd"
        by_org = dict(s.execute(select(IndexEntry.author, func.count()).group_by(IndexEntry.author)).all())
        assert by_org["ukp"] == 272


# ------------------------------------------------------------------------------------------------ fixtures
class IndexTestDatabase:
    """A migrated, empty database for one test (also imported by test_search*.py and test_ui*.py)."""

    def __init__(self, kind: str, tmp_path: Path):
        import uuid

        from sqlalchemy import create_engine, text

        from adapterhub.server import migrate
        from adapterhub.server.db import Database

        self.kind, self.schema = kind, None
        if kind == "sqlite":
            url = f"sqlite:///{tmp_path / 'hub.sqlite'}"
        else:
            base = os.environ.get("ADAPTERHUB_TEST_DATABASE_URL")
            if not base:
                pytest.skip("PostgreSQL not configured (ADAPTERHUB_TEST_DATABASE_URL)")
            self.schema = "t_" + uuid.uuid4().hex[:12]
            self._admin = create_engine(base)
            with self._admin.begin() as c:
                c.execute(text(f'CREATE SCHEMA "{self.schema}"'))
            url = base + ("&" if "?" in base else "?") + f"options=-csearch_path%3D{self.schema}"
        self.db = Database(url)
        migrate.upgrade(self.db.engine)
        self.session = self.db.session
        self.engine = self.db.engine

    def drop(self) -> None:
        from sqlalchemy import text

        self.db.dispose()
        if self.schema:
            with self._admin.begin() as c:
                c.execute(text(f'DROP SCHEMA "{self.schema}" CASCADE'))
            self._admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def index_db(request, tmp_path):
    """A migrated empty database: SQLite in tmp_path, or a fresh schema of the test PostgreSQL server."""
    db = IndexTestDatabase(request.param, tmp_path)
    yield db
    db.drop()
