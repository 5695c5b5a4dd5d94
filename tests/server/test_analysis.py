"""Comparison of the adapters of a task / dataset (adapterhub/server/analysis.py): the JSON API, the sortable
table and the server-rendered chart, against adapters uploaded to a live hub with metrics in their cards."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import httpx
import pytest

from adapterhub.server.analysis import AnalysisRow, scatter_svg

try:
    from test_index import INTEROP
    from test_search import upload_adapter
except ImportError:  # tests/ as a package
    from tests.server.test_index import INTEROP
    from tests.server.test_search import upload_adapter

pytestmark = pytest.mark.skipif(not INTEROP.is_dir(), reason="../shared fixtures missing")
AD = INTEROP / "bert/adapters"
# adapter parameters of the fixtures (hidden 32, 2 layers): seq_bn 2 x 162; double_seq_bn twice that;
# LoRA r=8 on q and v: 2 x 2 x 512
UPLOADS = {
    "alice/cmp-seq": (AD / "seq_bn/safetensors", {"accuracy": 0.81}, 324, "seq_bn"),
    "alice/cmp-double": (AD / "double_seq_bn/safetensors", {"accuracy": 0.84}, 648, "double_seq_bn"),
    "alice/cmp-lora": (AD / "lora/safetensors", {"accuracy": 0.79, "f1": 0.7}, 2048, "lora"),
}


@pytest.fixture(scope="module")
def hub(live_hub):
    for repo, (src, metrics, _, _) in UPLOADS.items():
        upload_adapter(live_hub, repo, src, task="cmp-task", subtask="toy", metrics=metrics)
    upload_adapter(live_hub, "alice/cmp-private", AD / "seq_bn/safetensors", task="cmp-task", subtask="toy",
                   metrics={"accuracy": 0.99})  # fmt: skip
    live_hub.api("alice").update_repo_settings("alice/cmp-private", private=True)
    upload_adapter(live_hub, "alice/cmp-f1", AD / "par_bn/safetensors", task="cmp-task", subtask="toy",
                   metrics={"f1": 0.9})  # fmt: skip
    with httpx.Client(base_url=live_hub.url) as c:
        yield c, live_hub


def test_api_rows_sorting_and_metrics(hub):
    c, live_hub = hub
    r = c.get("/api/analysis", params={"task": "cmp-task", "subtask": "toy"})
    assert r.status_code == 200, r.text
    body = r.json()
    # the metric most adapters report is compared; the private adapter is not visible anonymously
    assert body["metric"] == "accuracy" and body["metrics"] == {"accuracy": 3, "f1": 1}
    rows = body["rows"]
    assert [x["id"] for x in rows] == ["alice/cmp-double", "alice/cmp-seq", "alice/cmp-lora"]  # score desc
    assert [x["score"] for x in rows] == [0.84, 0.81, 0.79]
    assert {x["id"]: (x["params"], x["method"]) for x in rows} == {
        k: (v[2], v[3]) for k, v in UPLOADS.items()
    }
    by_params = c.get("/api/analysis", params={"task": "cmp-task", "subtask": "toy", "sort": "params"}).json()
    assert [x["params"] for x in by_params["rows"]] == [324, 648, 2048] and by_params["order"] == "asc"
    desc = c.get("/api/analysis", params={"task": "cmp-task", "sort": "params", "order": "desc"}).json()
    assert [x["params"] for x in desc["rows"]] == [2048, 648, 324]
    f1 = c.get("/api/analysis", params={"task": "cmp-task", "metric": "f1"}).json()
    assert [x["id"] for x in f1["rows"]] == ["alice/cmp-f1"]
    # the owner sees the private adapter too
    own = c.get(
        "/api/analysis",
        params={"task": "cmp-task"},
        headers={"authorization": f"Bearer {live_hub.tokens['alice']}"},
    ).json()
    assert own["rows"][0]["id"] == "alice/cmp-private" and own["metrics"]["accuracy"] == 4
    assert c.get("/api/analysis", params={"task": "cmp-task", "sort": "evil"}).status_code == 400
    assert c.get("/api/analysis", params={"task": "cmp-task", "order": "sideways"}).status_code == 422
    assert c.get("/api/analysis").status_code == 422


def test_page_table_links_and_chart(hub):
    c, _ = hub
    r = c.get("/analysis", params={"task": "cmp-task", "subtask": "toy"})
    assert r.status_code == 200
    table = r.text.split('id="comparison">')[1].split("</table>")[0]
    assert re.findall(r'<td><a href="/adapters/([^"]+)">', table) == [
        "alice/cmp-double",
        "alice/cmp-seq",
        "alice/cmp-lora",
    ]
    # the column titles sort (plain links): parameters ascending, then reversed
    link = re.search(r'<a href="([^"]+)">Parameters</a>', table).group(1).replace("&amp;", "&")
    assert "sort=params" in link
    r2 = c.get(link)
    table2 = r2.text.split('id="comparison">')[1].split("</table>")[0]
    assert re.findall(r'<td><a href="/adapters/([^"]+)">', table2) == [
        "alice/cmp-seq",
        "alice/cmp-double",
        "alice/cmp-lora",
    ]
    again = re.search(r'<a href="([^"]+)">Parameters</a>', table2).group(1).replace("&amp;", "&")
    assert "order=desc" in again
    # the chart: one linked marker per adapter, in the page's own SVG
    svg = ET.fromstring(
        r.text.split('<section class="panel chart" id="chart">')[1].split("</svg>")[0] + "</svg>"
    )
    points = [a for a in svg.iter("{http://www.w3.org/2000/svg}a")]
    assert sorted(a.get("href") for a in points) == [
        "/adapters/alice/cmp-double",
        "/adapters/alice/cmp-lora",
        "/adapters/alice/cmp-seq",
    ]
    assert "double_seq_bn" in r.text.split('class="legend"')[1].split("</ul>")[0]
    # choices list the task / dataset; with no task the page picks the first one
    assert 'href="/analysis?task=cmp-task&amp;subtask=toy"' in r.text
    assert c.get("/analysis").status_code == 200


def _row(id_, score, params, method="m"):
    return AnalysisRow(id=id_, url=f"/adapters/{id_}", method=method, base_model=None, score=score,
                       params=params, size_bytes=0, downloads=0, source="hub")  # fmt: skip


def test_chart_geometry():
    rows = [_row("a/x", 0.5, 1_000), _row("a/y", 0.9, 100_000, "n"), _row("a/z", 0.7, None)]
    svg = ET.fromstring(str(scatter_svg(rows, "accuracy")))
    ns = "{http://www.w3.org/2000/svg}"
    pos = {}
    for a in svg.iter(ns + "a"):
        m = next(iter(a.findall(ns + "circle") + a.findall(ns + "rect")))
        x = float(m.get("cx") or float(m.get("x")) + 5)
        y = float(m.get("cy") or float(m.get("y")) + 5)
        pos[a.get("data-id")] = (x, y, a.find(ns + "title").text)
    assert set(pos) == {"a/x", "a/y"}  # no parameter count, no point
    assert pos["a/y"][0] > pos["a/x"][0] and pos["a/y"][1] < pos["a/x"][1]  # bigger: right; better: up
    assert pos["a/y"][2] == "a/y: accuracy 0.9, 100,000 parameters, n"
    assert scatter_svg([_row("a/z", 0.7, None)], "accuracy") is None
    # one adapter, or equal scores: still a chart
    assert scatter_svg([_row("a/x", 0.5, 10)], "f1") is not None
