"""Model cards rendered like the Hugging Face Hub (adapterhub/server/cards.py): front matter as metadata,
HTML comments hidden, a safe subset of HTML kept by the sanitiser and everything active removed."""

from __future__ import annotations

import pytest

from adapterhub.server.cards import render_card, render_markdown

try:
    from test_index import INTEROP
except ImportError:  # tests/ as a package
    from tests.server.test_index import INTEROP


@pytest.mark.skipif(not INTEROP.is_dir(), reason="../shared fixtures missing")
def test_standard_peft_card():
    card = render_card((INTEROP / "bert/peft/lora_qv/README.md").read_text())
    body = str(card.body)
    assert "<!--" not in body and "Provide a quick summary" not in body  # the template's comments
    assert "<h1>Model Card for Model ID</h1>" in body and "<strong>Developed by:</strong>" in body
    assert "library_name" not in body and "---" not in body  # the front matter is not text
    assert card.metadata == [("Library", "peft"), ("Tags", ["base_model:adapter:", "lora", "transformers"])]


def test_front_matter_values():
    text = (
        "---\nlicense: apache-2.0\nbase_model: ''\ndatasets: [glue]\n"
        "model-index: [{name: x, results: [{metrics: [{type: accuracy, value: 0.9}]}]}]\n---\n# T\n"
    )
    meta = dict(render_card(text).metadata)
    assert meta["Licence"] == "apache-2.0" and meta["Datasets"] == ["glue"] and "Base model" not in meta
    assert '"value": 0.9' in meta["model-index"]  # nested values as compact JSON


def test_safe_subset_kept():
    html = str(
        render_markdown(
            "<details><summary>More</summary>\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n</details>\n\n"
            '<b>bold</b> <a href="https://example.org/x">link</a> <sub>2</sub>\n\n'
            "```python\nx = '<b>'\n```\n"
        )
    )
    assert "<details><summary>More</summary>" in html and "<td>1</td>" in html
    assert "<b>bold</b>" in html and "<sub>2</sub>" in html
    assert '<a href="https://example.org/x" rel="noopener noreferrer nofollow">link</a>' in html
    assert "<code class=\"language-python\">x = '&lt;b&gt;'" in html  # code stays text


@pytest.mark.parametrize(
    "evil, gone",
    [
        ("<script>alert(1)</script>", ["<script", "alert(1)"]),
        ('<img src="x.png" onerror="alert(1)">', ["onerror", "alert"]),
        ('<a href="javascript:alert(1)">x</a>', ["javascript:"]),
        ("[x](javascript:alert(1))", ["href="]),  # left as text, not a link
        ('<iframe src="https://evil.example"></iframe>', ["<iframe"]),
        ("<style>body{display:none}</style>", ["<style", "display:none"]),
        ('<p style="position:fixed">x</p>', ["style=", "position:fixed"]),
        ('<form action="/logout" method="post"><button>x</button></form>', ["<form", "<button"]),
        ("<svg><script>alert(1)</script></svg>", ["<svg", "alert(1)"]),
        ('<a href="/x" onclick="alert(1)" id="login">x</a>', ["onclick", 'id="login"']),
        ("<!-- secret --> visible", ["secret", "<!--"]),
        ('<object data="x.swf"></object><embed src="x.swf">', ["<object", "<embed"]),
        ('<meta http-equiv="refresh" content="0;url=https://evil.example">', ["<meta", "refresh"]),
    ],
)
def test_active_content_removed(evil, gone):
    html = str(render_markdown(evil))
    for g in gone:
        assert g not in html, html
