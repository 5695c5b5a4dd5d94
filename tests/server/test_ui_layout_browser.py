"""Every page of the web UI in headless Chromium at a desktop (1280 px) and a phone (390 px) width: it
answers 200, a screenshot is saved as a test artefact (`test-artifacts/screenshots/` in the repository root,
ignored by git),
and nothing is wider than the window (no horizontal scrolling), with long names in the tables. JavaScript is
off for the pages; the layout checks run through the browser's driver."""

from __future__ import annotations

from pathlib import Path

import pytest

try:
    from test_index import INTEROP, LEGACY
    from test_search import upload_adapter
    from test_ui_browser import CHROMIUM, LAUNCH_ARGS, pytestmark as browser_marks
except ImportError:  # tests/ as a package
    from tests.server.test_index import INTEROP, LEGACY
    from tests.server.test_search import upload_adapter
    from tests.server.test_ui_browser import CHROMIUM, LAUNCH_ARGS, pytestmark as browser_marks

pytestmark = browser_marks
LONG = "results/" + "evaluation-of-the-adapter-on-a-dataset-with-a-long-name-" * 3 + "predictions.jsonl"
WIDTHS = {"desktop": 1280, "phone": 390}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


@pytest.fixture(scope="module")
def site(live_hub):
    from huggingface_hub import CommitOperationAdd

    sync_api = pytest.importorskip("playwright.sync_api")
    _, oid = upload_adapter(
        live_hub,
        "alice/layout-compacter-with-a-rather-long-repository-name",
        INTEROP / "bert/adapters/compacter-seqcls/safetensors",
        task="sentiment",
        subtask="sst-2",
        language="en",
        metrics={"accuracy": 0.91},
    )
    repo = "alice/layout-compacter-with-a-rather-long-repository-name"
    second = (
        live_hub.api("alice")
        .create_commit(
            repo,
            [CommitOperationAdd(LONG, b'{"text": "' + b"x" * 400 + b'"}\n')],
            commit_message="Add predictions " + "with-a-commit-message-that-has-no-spaces-" * 4,
        )
        .oid
    )
    shots = SCREENSHOTS
    shots.mkdir(parents=True, exist_ok=True)
    for old in shots.glob("*.png"):
        old.unlink()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        yield browser, repo, oid, second, shots
        browser.close()


def pages(repo: str, oid: str, second: str) -> dict[str, str]:
    return {
        "home": "/",
        "search": "/adapters?task=sentiment",
        "tasks": "/tasks",
        "languages": "/languages",
        "models": "/models",
        "adapter": f"/adapters/{repo}",
        "commits": f"/adapters/{repo}/commits",
        "file-safetensors": f"/adapters/{repo}/blob/{oid}/adapter.safetensors",
        "file-text": f"/adapters/{repo}/blob/{second}/{LONG}",
        "legacy": "/adapters/ukp/bert-base-uncased_sentiment_sst-2_pfeiffer",
        "analysis": "/analysis?task=sentiment&subtask=sst-2",
        "login": "/login",
        "upload": "/upload",
        "card-editor": f"/adapters/{repo}/card",
    }


@pytest.mark.skipif(not LEGACY.is_dir(), reason="../shared data missing")
@pytest.mark.parametrize("device", sorted(WIDTHS))
def test_pages_fit_the_window(site, live_hub, device):
    browser, repo, oid, second, shots = site
    width = WIDTHS[device]
    context = browser.new_context(
        java_script_enabled=False, base_url=live_hub.url, viewport={"width": width, "height": 900}
    )
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    overflow = {}
    try:
        for name, path in pages(repo, oid, second).items():
            response = pg.goto(path)
            assert response is not None and response.status == 200, (name, path)
            pg.screenshot(path=str(shots / f"{name}-{width}.png"), full_page=True)
            scroll = pg.evaluate("document.documentElement.scrollWidth")
            if scroll > width:
                wide = pg.evaluate(
                    """w => [...document.querySelectorAll('body *')]
                        .filter(e => e.getBoundingClientRect().right > w + 1)
                        .slice(0, 5).map(e => e.tagName + '.' + e.className + ' ' + e.getBoundingClientRect().right)""",
                    width,
                )
                overflow[name] = (scroll, wide)
            if name == "adapter":  # the anatomy drawing is shown and scaled into its panel
                box = pg.locator("#anatomy svg").bounding_box()
                assert box is not None and 200 < box["width"] <= width and box["height"] > 200
        assert overflow == {}, overflow
        assert len(list(shots.glob(f"*-{width}.png"))) == len(pages(repo, oid, second))
    finally:
        context.close()


def _fits(pg, width: int) -> bool:
    return pg.evaluate("document.documentElement.scrollWidth") <= width


@pytest.mark.parametrize("device", ["phone"])
def test_manage_a_repository_in_the_browser(site, live_hub, device):
    """Log in, create a repository, make it public, tag it, then delete it with the typed confirmation; each
    page fits the phone's width and is kept as a screenshot."""
    browser, _, _, _, shots = site
    width = WIDTHS[device]
    context = browser.new_context(
        java_script_enabled=False, base_url=live_hub.url, viewport={"width": width, "height": 900}
    )
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    api = live_hub.api("alice")
    try:
        pg.goto("/login?next=/new")
        pg.fill("input[name=token]", live_hub.tokens["alice"])
        pg.click("form.form button[type=submit]")
        assert pg.url.endswith("/new")
        pg.screenshot(path=str(shots / f"manage-new-{width}.png"), full_page=True)
        assert _fits(pg, width)
        pg.fill("input[name=name]", "browser-managed")
        pg.check("input[name=private]")
        pg.click("#new-repo-form button[type=submit]")
        assert "/adapters/alice/browser-managed/settings?done=created" in pg.url
        assert api.model_info("alice/browser-managed").private is True
        pg.uncheck("#visibility-form input[name=private]")
        pg.click("#visibility-form button[type=submit]")
        assert "Visibility changed." in pg.locator("#settings-done").inner_text()
        assert api.model_info("alice/browser-managed").private is False
        pg.fill("#ref-form input[name=ref]", "v1")
        pg.click("#ref-form button[type=submit]")
        assert "v1" in pg.locator("#refs").inner_text()
        pg.screenshot(path=str(shots / f"manage-settings-{width}.png"), full_page=True)
        assert _fits(pg, width)
        pg.fill("#delete-form input[name=confirm]", "browser-managed")  # not the full id: refused
        pg.click("#delete-form button[type=submit]")
        assert "to confirm" in pg.locator("#settings-error").inner_text() and api.repo_exists(
            "alice/browser-managed"
        )
        pg.fill("#delete-form input[name=confirm]", "alice/browser-managed")
        pg.click("#delete-form button[type=submit]")
        assert "/adapters?author=alice" in pg.url and not api.repo_exists("alice/browser-managed")
        pg.goto("/orgs/acme/members")
        pg.screenshot(path=str(shots / f"manage-members-{width}.png"), full_page=True)
        assert "alice" in pg.locator("#members").inner_text() and _fits(pg, width)
    finally:
        context.close()
