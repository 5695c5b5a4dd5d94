"""End-to-end in headless Chromium (Debian `chromium`, driven by Playwright with `executable_path`; no
`playwright install`): browse by task, filter with facets, search, open an adapter page, log in and upload
an adapter folder through the form. JavaScript is disabled: the UI must work without it."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

try:
    from test_index import INTEROP, LEGACY
    from test_search import card, upload_adapter
except ImportError:  # tests/ as a package
    from tests.server.test_index import INTEROP, LEGACY
    from tests.server.test_search import card, upload_adapter

CHROMIUM = os.environ.get("ADAPTERHUB_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).is_file(), reason=f"no Chromium at {CHROMIUM} (scripts/services.sh)"
    ),
    pytest.mark.skipif(not (LEGACY.is_dir() and INTEROP.is_dir()), reason="../shared data missing"),
]


@pytest.fixture(scope="module")
def page(live_hub):
    sync_api = pytest.importorskip("playwright.sync_api")
    upload_adapter(
        live_hub,
        "alice/browser-seqbn",
        INTEROP / "bert/adapters/seq_bn-seqcls/safetensors",
        task="sentiment",
        subtask="sst-2",
        language="en",
        license="apache-2.0",
    )
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        context = browser.new_context(java_script_enabled=False, base_url=live_hub.url)
        pg = context.new_page()
        pg.set_default_timeout(20_000)
        yield pg
        context.close()
        browser.close()


def heading_count(pg) -> int:
    return int(re.match(r"(\d+) adapter", pg.locator("h1").first.inner_text()).group(1))


def test_browse_filter_search_and_open(page, live_hub):
    pg = page
    pg.goto("/")
    assert "Find, share and load adapters" in pg.locator("h1").inner_text()
    pg.click("nav >> text=Tasks")
    pg.click("#task-sentiment h3 a")  # "Sentiment Analysis"
    assert pg.url.endswith("/adapters?task=sentiment")
    all_sentiment = heading_count(pg)
    assert all_sentiment >= 2
    # facet filter: only the hub's own (non-legacy) adapters; the "Source" facet starts folded
    pg.click('details.facet:has(a[data-facet="source"]) summary')
    pg.click('a.facet-link[data-facet="source"][data-value="hub"]')
    assert "source=hub" in pg.url and heading_count(pg) == 1
    assert pg.locator(".chip-active").all_inner_texts() == ["Task: sentiment ✕", "Source: hub ✕"]
    # remove it again, filter by a base model instead
    pg.click(".chip-active >> text=Source: hub")
    assert heading_count(pg) == all_sentiment
    pg.click('a.facet-link[data-facet="base_model"][data-value="roberta-base"]')
    titles = pg.locator(".card-title").all_inner_texts()
    assert titles and all("roberta-base" in t for t in titles) and heading_count(pg) == len(titles)
    # the search box, then sort by name (a plain GET form)
    pg.fill("header input[name=q]", "houlsby sst")
    pg.press("header input[name=q]", "Enter")
    assert "q=houlsby+sst" in pg.url
    pg.select_option("form.sort select", "name")
    pg.click("form.sort button")
    titles = pg.locator(".card-title").all_inner_texts()
    assert titles == sorted(titles) and all("houlsby" in t for t in titles)
    # open an adapter page from the list
    pg.goto("/adapters?source=hub&task=sentiment")
    pg.click("text=alice/browser-seqbn")
    assert pg.url.endswith("/adapters/alice/browser-seqbn")
    rows = pg.locator("#files tbody tr").all_inner_texts()
    assert any("adapter.safetensors" in r for r in rows) and any("README.md" in r for r in rows)
    assert "alice/browser-seqbn@" in pg.locator("#snippet-adapterhub").inner_text()
    assert "validation:" in pg.locator("#validation-status").inner_text()


def test_login_and_upload_folder(page, live_hub, tmp_path):
    pg = page
    src = tmp_path / "my-adapter"
    src.mkdir()
    for f in (INTEROP / "bert/adapters/double_seq_bn/safetensors").iterdir():
        shutil.copy(f, src / f.name)
    (src / "README.md").write_bytes(
        card(base_model="alice/tiny-bert", task="nli", subtask="rte", language="en")
    )
    pg.goto("/upload")
    pg.click("nav >> text=Log in")
    pg.fill("input[name=token]", live_hub.tokens["alice"])
    pg.click("form.form button[type=submit]")
    assert pg.url.endswith("/upload") and "alice · log out" in pg.locator("header").inner_text()
    pg.fill("input[name=repo_id]", "browser-upload")
    pg.set_input_files("input[name=folder]", str(src))  # a whole folder (webkitdirectory)
    pg.fill("input[name=message]", "uploaded from Chromium")
    pg.click("form.form button[type=submit]")
    assert "/adapters/alice/browser-upload?uploaded=" in pg.url, pg.content()[:2000]
    assert "Uploaded as commit" in pg.locator("#upload-ok").inner_text()
    assert "uploaded from Chromium" in pg.locator("#versions").inner_text()
    files = live_hub.api("alice").list_repo_files("alice/browser-upload")
    assert sorted(files) == sorted(p.name for p in src.iterdir())
    # a refused upload shows the reason on the form
    pg.goto("/upload")
    pg.fill("input[name=repo_id]", "browser-bad")
    pg.set_input_files(
        "input[name=files]",
        [
            str(INTEROP / "bert/adapters/seq_bn/bin/pytorch_adapter.bin"),
            str(INTEROP / "bert/adapters/seq_bn/bin/adapter_config.json"),
        ],
    )
    pg.click("form.form button[type=submit]")
    assert "pytorch_adapter.bin" in pg.locator("#upload-error").inner_text()
    assert pg.locator("input[name=repo_id]").input_value() == "browser-bad"  # the form keeps its values
