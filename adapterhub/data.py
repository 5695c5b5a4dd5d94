"""Reading text-classification data (GLUE-style TSV folders or any TSV/CSV file) and batching it.

* :func:`load_glue_task` reads a GLUE task folder (``SST-2``, ``CoLA``, ``MRPC``, ``RTE``, ``WNLI``) as the
  standard GLUE download script writes it;
* :func:`read_table` reads any TSV/CSV file (columns by header name or 0-based index) or JSON Lines file (one
  object per line; columns are keys), with class labels or, for regression, numbers;
* :func:`encode` tokenizes a :class:`TextDataset` once (no padding), and :func:`length_bucketed_batches` groups
  examples of similar length so that batches are padded only to their own longest example ("dynamic padding"):
  on a CPU this is most of the speed of training on short sentences.

Every problem with the input (a missing file, an unknown column, a row with too few fields, an unknown label)
raises :class:`DataError`, which names the file, the row and what was expected.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import random
import sys
from pathlib import Path
from typing import Iterator, Sequence

import torch

from .library.errors import AdapterError

__all__ = [
    "DataError",
    "TaggedDataset",
    "encode_for",
    "encode_tagged",
    "encode_texts",
    "read_tagged",
    "read_texts",
    "GLUE_TASKS",
    "GlueTask",
    "TextDataset",
    "collate",
    "encode",
    "glue_task",
    "glue_task_names",
    "iterate",
    "length_bucketed_batches",
    "load_glue_task",
    "read_table",
]


class DataError(AdapterError, ValueError):
    """Training or evaluation data cannot be read: names the file and what is wrong with it."""


@dataclasses.dataclass
class TextDataset:
    """Texts (and optional second texts, for sentence-pair tasks) with integer labels."""

    texts: list[str]
    labels: list[int]
    label_names: list[str]
    pairs: list[str] | None = None
    source: str = ""

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, n: int) -> "TextDataset":
        """The first ``n`` examples."""
        return TextDataset(
            self.texts[:n],
            self.labels[:n],
            self.label_names,
            self.pairs[:n] if self.pairs is not None else None,
            self.source,
        )


# ------------------------------------------------------------------------------------------ reading


def _column_index(spec: str | int, header: list[str] | None, path: Path, role: str) -> int:
    """The index of column ``spec`` (a header name, or a 0-based index given as int or digit string)."""
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        index = int(spec)
        width = len(header) if header is not None else None
        if width is not None and index >= width:
            raise DataError(
                f"{path}: {role} column index {index} is out of range; the file has {width} columns"
            )
        return index
    if header is None:
        raise DataError(
            f"{path}: {role} column {spec!r} is a name, but the file is read without a header; "
            f"give a 0-based column index instead"
        )
    if spec not in header:
        raise DataError(f"{path}: no {role} column {spec!r}; the columns are: {', '.join(map(repr, header))}")
    return header.index(spec)


def _sort_labels(values: set[str]) -> list[str]:
    try:
        return sorted(values, key=lambda v: float(v))
    except ValueError:
        return sorted(values)


def read_table(
    path: str | Path,
    text_column: str | int,
    label_column: str | int,
    text_pair_column: str | int | None = None,
    *,
    header: bool = True,
    label_names: Sequence[str] | None = None,
    delimiter: str | None = None,
    regression: bool = False,
) -> TextDataset:
    """Read a TSV (``.tsv``, tab, no quoting, as GLUE), CSV (``.csv``, comma, quoted) or JSON Lines (``.jsonl``,
    one object per line) file.

    Columns are header names (keys) or 0-based indices. Labels are the strings found in ``label_column``, mapped
    to ``0..n-1`` in the order of ``label_names`` (default: sorted, numerically when all labels are numbers);
    with ``regression``, they are numbers (floats) instead.
    """
    path = Path(path)
    if not path.is_file():
        hint = ""
        if path.parent.is_dir():
            found = sorted(p.name for p in path.parent.iterdir() if p.suffix in (".tsv", ".csv", ".jsonl"))
            hint = f" ({path.parent} holds: {', '.join(found) or 'no .tsv/.csv/.jsonl files'})"
        elif not path.parent.exists():
            hint = f" (the folder {path.parent} does not exist)"
        raise DataError(f"data file not found: {path}{hint}")
    if path.suffix.lower() in (".jsonl", ".json"):
        rows, delimiter, header = _json_lines_rows(path), ",", True
    else:
        if delimiter is None:
            delimiter = "," if path.suffix.lower() == ".csv" else "\t"
        quoting = csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
        with open(path, encoding="utf-8-sig", newline="") as f:
            rows = [row for row in csv.reader(f, delimiter=delimiter, quoting=quoting) if row]
    if not rows:
        raise DataError(f"{path} is empty")
    names = [c.strip() for c in rows[0]] if header else None
    first_line = 2 if header else 1
    body = rows[1:] if header else rows
    if not body:
        raise DataError(f"{path} has a header but no examples")
    text_i = _column_index(text_column, names, path, "text")
    label_i = _column_index(label_column, names, path, "label")
    pair_i = (
        _column_index(text_pair_column, names, path, "text pair") if text_pair_column is not None else None
    )
    need = max(i for i in (text_i, label_i, pair_i) if i is not None) + 1
    texts, pairs, raw = [], [] if pair_i is not None else None, []
    for number, row in enumerate(body, start=first_line):
        if len(row) < need:
            raise DataError(
                f"{path}, line {number}: {len(row)} field(s), expected at least {need} "
                f"(is the delimiter {delimiter!r} right?): {delimiter.join(row)[:120]!r}"
            )
        texts.append(row[text_i])
        if pairs is not None:
            pairs.append(row[pair_i])
        raw.append(row[label_i].strip())
    if regression:
        values = []
        for number, value in enumerate(raw, start=first_line):
            try:
                values.append(float(value))
            except ValueError:
                raise DataError(f"{path}, line {number}: the label {value!r} is not a number") from None
        return TextDataset(texts, values, [], pairs, str(path))
    if label_names is None:
        label_names = _sort_labels(set(raw))
    label_names = [str(n) for n in label_names]
    lookup = {name: i for i, name in enumerate(label_names)}
    labels = []
    for number, value in enumerate(raw, start=first_line):
        if value not in lookup:
            raise DataError(
                f"{path}, line {number}: unknown label {value!r}; expected one of "
                f"{', '.join(map(repr, label_names))}"
            )
        labels.append(lookup[value])
    return TextDataset(texts, labels, list(label_names), pairs, str(path))


def _json_lines_rows(path: Path) -> list[list[str]]:
    """A JSON Lines file as rows of strings: the first row holds the keys (in first-seen order)."""
    objects = []
    with open(path, encoding="utf-8-sig") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{path}, line {number}: not JSON ({error.msg})") from None
            if not isinstance(item, dict):
                raise DataError(f"{path}, line {number}: expected a JSON object, got {type(item).__name__}")
            objects.append((number, item))
    keys = list(dict.fromkeys(k for _, item in objects for k in item))
    rows = [keys] if objects else []
    for number, item in objects:
        row = []
        for key in keys:
            value = item.get(key)
            if isinstance(value, (dict, list)):
                raise DataError(f"{path}, line {number}: {key!r} holds a {type(value).__name__}, not a value")
            row.append("" if value is None else value if isinstance(value, str) else json.dumps(value))
        rows.append(row)
    return rows


@dataclasses.dataclass(frozen=True)
class GlueTask:
    folder: str
    text: str | int
    label: str | int
    labels: tuple[str, ...]
    pair: str | int | None = None
    header: bool = True
    train: str = "train.tsv"
    dev: str = "dev.tsv"
    metric: str = "accuracy"  # the metric GLUE reports for the task
    regression: bool = False


GLUE_TASKS: dict[str, GlueTask] = {
    "sst-2": GlueTask("SST-2", "sentence", "label", ("0", "1")),
    "cola": GlueTask("CoLA", 3, 1, ("0", "1"), header=False, metric="matthews"),
    "mrpc": GlueTask("MRPC", "#1 String", "Quality", ("0", "1"), pair="#2 String", metric="f1"),
    "qnli": GlueTask("QNLI", "question", "label", ("entailment", "not_entailment"), pair="sentence"),
    "sts-b": GlueTask("STS-B", "sentence1", "score", (), pair="sentence2", metric="pearson", regression=True),
    "rte": GlueTask("RTE", "sentence1", "label", ("entailment", "not_entailment"), pair="sentence2"),
    "wnli": GlueTask("WNLI", "sentence1", "label", ("0", "1"), pair="sentence2"),
}
_ALIASES = {"sst2": "sst-2", "sst": "sst-2", "stsb": "sts-b", "sts": "sts-b"}


def glue_task_names() -> list[str]:
    return sorted(GLUE_TASKS)


def glue_task(name: str) -> GlueTask:
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in GLUE_TASKS:
        raise DataError(
            f"unknown GLUE task {name!r}; known tasks: {', '.join(glue_task_names())} "
            f"(or give --train-file/--dev-file and the columns)"
        )
    return GLUE_TASKS[key]


def load_glue_task(name: str, data_dir: str | Path) -> tuple[TextDataset, TextDataset]:
    """(train, dev) of a GLUE task from ``data_dir`` (the folder that holds ``SST-2/``, ``CoLA/``, ...)."""
    task = glue_task(name)
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(
            f"GLUE data folder not found: {root} (pass --data-dir, the folder that holds {task.folder}/)"
        )
    folder = root / task.folder
    if not folder.is_dir() and (root.name == task.folder):
        folder = root  # the task folder itself was given
    if not folder.is_dir():
        raise DataError(f"no {task.folder}/ folder in {root}")
    split = [
        read_table(
            folder / file,
            task.text,
            task.label,
            task.pair,
            header=task.header,
            label_names=None if task.regression else task.labels,
            regression=task.regression,
        )
        for file in (task.train, task.dev)
    ]
    return split[0], split[1]


# ------------------------------------------------------------------------------------------ token tagging, texts


@dataclasses.dataclass
class TaggedDataset:
    """Sentences as words with one tag each (tags as indices into ``label_names``), for token tagging."""

    words: list[list[str]]
    tags: list[list[int]]
    label_names: list[str]
    source: str = ""

    def __len__(self) -> int:
        return len(self.words)

    def subset(self, n: int) -> "TaggedDataset":
        return TaggedDataset(self.words[:n], self.tags[:n], self.label_names, self.source)


def _conll_sentences(path: Path, tag_column: int | None) -> list[list[tuple[str, str]]]:
    """(word, tag) sentences of a CoNLL-U file (FORM and, by default, UPOS; multiword tokens and empty nodes
    skipped) or of whitespace-separated columns (word first, tag last; blank lines between sentences)."""
    conllu = path.suffix.lower() == ".conllu"
    sentences, current = [], []
    with open(path, encoding="utf-8-sig") as f:
        for number, line in enumerate(f, start=1):
            line = line.rstrip("\n")
            if not line.strip():
                if current:
                    sentences.append(current)
                current = []
                continue
            if line.startswith("#") or line.startswith("-DOCSTART-"):
                continue
            fields = line.split("\t") if conllu else line.split()
            if conllu:
                if len(fields) != 10:
                    raise DataError(
                        f"{path}, line {number}: a CoNLL-U line has 10 tab-separated fields, got {len(fields)}"
                    )
                if "-" in fields[0] or "." in fields[0]:
                    continue
                current.append((fields[1], fields[3 if tag_column is None else tag_column]))
            else:
                if len(fields) < 2:
                    raise DataError(f"{path}, line {number}: expected a word and a tag, got {line[:80]!r}")
                current.append((fields[0], fields[-1 if tag_column is None else tag_column]))
    if current:
        sentences.append(current)
    return sentences


def read_tagged(
    path: str | Path,
    words_key: str = "tokens",
    tags_key: str = "tags",
    *,
    label_names: Sequence[str] | None = None,
    tag_column: int | None = None,
) -> TaggedDataset:
    """Read tagged sentences: CoNLL-U (``.conllu``: words and UPOS tags, or field ``tag_column``), JSON Lines
    (``.jsonl``: lists ``words_key`` and ``tags_key`` per line) or CoNLL-style columns (any other file: the word
    first, the tag last, or column ``tag_column``). Tags map to ``label_names`` (default: sorted)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    if path.suffix.lower() == ".jsonl":
        sentences = []
        with open(path, encoding="utf-8-sig") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                except json.JSONDecodeError as error:
                    raise DataError(f"{path}, line {number}: not JSON ({error.msg})") from None
                words, tags = (
                    (item.get(words_key), item.get(tags_key)) if isinstance(item, dict) else (None, None)
                )
                if not isinstance(words, list) or not isinstance(tags, list) or len(words) != len(tags):
                    raise DataError(
                        f"{path}, line {number}: expected lists {words_key!r} and {tags_key!r} of one length"
                    )
                sentences.append([(str(w), str(t)) for w, t in zip(words, tags)])
    else:
        sentences = _conll_sentences(path, tag_column)
    if not sentences:
        raise DataError(f"{path} holds no sentences")
    if label_names is None:
        label_names = sorted({t for sentence in sentences for _, t in sentence})
    lookup = {name: i for i, name in enumerate(label_names)}
    tags = []
    for i, sentence in enumerate(sentences):
        unknown = [t for _, t in sentence if t not in lookup]
        if unknown:
            raise DataError(
                f"{path}, sentence {i + 1}: unknown tag {unknown[0]!r}; the tags are {', '.join(label_names)}"
            )
        tags.append([lookup[t] for _, t in sentence])
    return TaggedDataset([[w for w, _ in s] for s in sentences], tags, list(label_names), str(path))


def encode_tagged(tokenizer, data: TaggedDataset, max_length: int) -> tuple[list[dict], list[list[int]]]:
    """Tokenize tagged sentences (words split further into sub-tokens): (features, token labels). A word's tag
    goes to its first sub-token; the other sub-tokens and the special tokens get -100 (no label). Needs a fast
    tokenizer (for the word of each sub-token)."""
    if not getattr(tokenizer, "is_fast", False):
        raise DataError("token tagging needs a fast tokenizer (one that maps sub-tokens to words)")
    if not len(data):
        return [], []
    encoded = tokenizer(
        data.words,
        is_split_into_words=True,
        truncation=True,
        max_length=max_length,
        return_attention_mask=False,
    )
    keys = [k for k in ("input_ids", "token_type_ids") if k in encoded]
    features, labels = [], []
    for i in range(len(data)):
        previous, row = None, []
        for word in encoded.word_ids(i):
            row.append(data.tags[i][word] if word is not None and word != previous else -100)
            previous = word
        features.append({k: list(encoded[k][i]) for k in keys})
        labels.append(row)
    return features, labels


def read_texts(path: str | Path, text_column: str | int = "text") -> list[str]:
    """Texts for language modelling: a ``.txt`` file (one text per non-empty line), a CoNLL-U file (``.conllu``:
    the sentences' ``# text =`` lines) or the text column of a TSV/CSV/JSON Lines file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".txt", ".conllu"):
        lines = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
        if suffix == ".conllu":
            lines = [line[len("# text =") :].strip() for line in lines if line.startswith("# text =")]
        texts = [line for line in lines if line]
    else:
        texts = read_table(path, text_column, text_column).texts
    if not texts:
        raise DataError(f"{path} holds no texts")
    return texts


def encode_texts(tokenizer, texts: Sequence[str], max_length: int) -> tuple[list[dict], list[list[int]]]:
    """Token ids of each text (truncated to ``max_length``; the end-of-text token appended when the tokenizer
    has one and there is room) and the same ids as causal-LM labels."""
    eos = getattr(tokenizer, "eos_token_id", None)
    features, labels = [], []
    for ids in tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]:
        ids = list(ids)
        if eos is not None and len(ids) < max_length and (not ids or ids[-1] != eos):
            ids.append(eos)
        features.append({"input_ids": ids})
        labels.append(list(ids))
    return features, labels


def encode_for(task: str, tokenizer, data, max_length: int) -> tuple[list[dict], list]:
    """(features, labels) of a dataset for a training task: :func:`encode` and the labels for classification and
    regression, :func:`encode_tagged` for tagging, :func:`encode_texts` (the texts) for causal LM."""
    if task == "tagging":
        return encode_tagged(tokenizer, data, max_length)
    if task == "causal_lm":
        return encode_texts(tokenizer, data.texts, max_length)
    return encode(tokenizer, data, max_length), data.labels


# ------------------------------------------------------------------------------------------ batching


def encode(tokenizer, data: TextDataset, max_length: int) -> list[dict[str, list[int]]]:
    """Tokenize every example once (truncated to ``max_length``, not padded): ``input_ids`` (and
    ``token_type_ids`` when the tokenizer gives them)."""
    if not len(data):
        return []
    kwargs = dict(truncation=True, max_length=max_length, padding=False, return_attention_mask=False)
    encoded = (
        tokenizer(data.texts, data.pairs, **kwargs)
        if data.pairs is not None
        else tokenizer(data.texts, **kwargs)
    )
    keys = [k for k in ("input_ids", "token_type_ids") if k in encoded]
    return [{k: list(encoded[k][i]) for k in keys} for i in range(len(data))]


def length_bucketed_batches(
    lengths: Sequence[int],
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int = 0,
    epoch: int = 0,
    window: int = 50,
) -> list[list[int]]:
    """Index batches of examples of similar length.

    Without shuffling: examples sorted by length, cut into batches (for evaluation). With shuffling: the
    examples are shuffled, sorted by length within windows of ``window`` batches, cut into batches, and the
    batches shuffled; so every epoch sees other neighbours and batch order while padding stays small.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    order = list(range(len(lengths)))
    if not shuffle:
        order.sort(key=lambda i: lengths[i])
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng = random.Random(seed * 1_000_003 + epoch)
    rng.shuffle(order)
    span = batch_size * max(1, window)
    batches = []
    for start in range(0, len(order), span):
        chunk = sorted(order[start : start + span], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(examples: Sequence[dict[str, list[int]]], pad_token_id: int = 0) -> dict[str, torch.Tensor]:
    """Pad a batch of :func:`encode` outputs to its own longest example; adds the attention mask."""
    width = max(len(e["input_ids"]) for e in examples)
    batch = {}
    for key in examples[0]:
        pad = pad_token_id if key == "input_ids" else 0
        batch[key] = torch.tensor(
            [e[key] + [pad] * (width - len(e[key])) for e in examples], dtype=torch.long
        )
    batch["attention_mask"] = torch.tensor(
        [[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"])) for e in examples], dtype=torch.long
    )
    return batch


def iterate(
    encoded: Sequence[dict[str, list[int]]],
    labels: Sequence[int] | None,
    batches: Sequence[Sequence[int]],
    pad_token_id: int = 0,
) -> Iterator[dict[str, torch.Tensor]]:
    """Padded tensors (and ``labels`` if given: one per example, or one per token) for each batch of indices."""
    for batch in batches:
        out = collate([encoded[i] for i in batch], pad_token_id)
        if labels is not None:
            out["labels"] = _label_tensor([labels[i] for i in batch], out["input_ids"].shape[1])
        yield out


def _label_tensor(labels: list, width: int) -> torch.Tensor:
    """Labels of a batch: ints (classes), floats (regression) or, per token, lists padded with -100 to ``width``."""
    if labels and isinstance(labels[0], (list, tuple)):
        return torch.tensor([list(row) + [-100] * (width - len(row)) for row in labels], dtype=torch.long)
    dtype = torch.float if labels and isinstance(labels[0], float) else torch.long
    return torch.tensor(labels, dtype=dtype)
