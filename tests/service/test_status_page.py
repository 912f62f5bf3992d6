"""The status page on the admin port (GET / and /status), served by a real sidecar fed by the
OpenTelemetry SDK, and opened in headless Chromium (Debian's package): the rendered DOM and a
screenshot show the hops and fields sent, with the repaired cells marked."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest

from costctx.envelope import ENVELOPE
from tests.support.ops_workload import HOPS, send_ops_workload
from tests.support.png import colour_counts
from tests.support.sidecar import token_auth
from tests.support.tools import require_tool

# The worker hop carries only the ids; these arrive by inheritance from the gateway's root.
REPAIRED = {("worker", key) for key in ("workflow.name", "owner.tenant", "owner.team", "owner.feature",
                                        "owner.user", "policy.id")}
REPAIRED_MARK_RGB = (0x1F, 0x5F, 0xBF)
PASS_RGB, FAIL_RGB = (0xC8, 0xEF, 0xC8), (0xF7, 0xB9, 0xB3)


class Cells(HTMLParser):
    """The matrix cells (td with data-hop and data-field) and their attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str], dict[str, str]] = {}
        self.verdicts: dict[str, str] = {}
        self._workflow: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "td" and "data-hop" in a and "data-field" in a:
            self.cells[(a["data-hop"], a["data-field"])] = a
        if tag == "tr" and "data-workflow" in a:
            self._workflow = a["data-workflow"]
        if tag == "td" and self._workflow and "verdict" in a.get("class", "") and self._workflow not in self.verdicts:
            self.verdicts[self._workflow] = a["class"].split()[-1]


def parse(html: str) -> Cells:
    parser = Cells()
    parser.feed(html)
    return parser


def fetch(port: int, path: str, token: str | None = None) -> tuple[int, str, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


def wait_for_matrix(port: int, token: str | None = None) -> str:
    deadline = time.monotonic() + 60
    while True:
        _, _, html = fetch(port, "/status", token)
        cells = parse(html).cells
        if {hop for hop, _ in cells} == set(HOPS) and ("worker", "owner.tenant") in cells:
            return html
        assert time.monotonic() < deadline, "the matrix never showed every hop"
        time.sleep(0.2)


# wf-1 spends 0.25 + 0.5 of 0.8: the second committed span is past the soft threshold (80%).
BUDGET = {"budget": {"policies": [{"id": "pol-1", "workflow": {"cost_usd": 0.8}}]}}


def test_status_page_matrix_verdicts_spend_and_health(sink, make_sidecar):
    runner = make_sidecar(processor_config=BUDGET)
    send_ops_workload(runner.sidecar.grpc_port)
    port = runner.sidecar.admin_port
    html = wait_for_matrix(port)
    status, content_type, root = fetch(port, "/")
    assert status == 200 and content_type.startswith("text/html")
    assert parse(root).cells.keys() == parse(html).cells.keys()

    page = parse(html)
    assert {field for _, field in page.cells} == set(ENVELOPE.context_keys)
    repaired = {key for key, cell in page.cells.items() if cell["data-repaired"] == "true"}
    assert repaired == REPAIRED
    for key in REPAIRED:
        cell = page.cells[key]
        assert "repaired" in cell["class"].split()
        assert (cell["data-before"], cell["data-after"]) == ("0%", "100%")
    assert page.cells[("billing", "owner.tenant")]["data-after"] == "0%"
    assert "fail" in page.cells[("billing", "owner.tenant")]["class"].split()
    assert page.verdicts == {"answer": "pass", "invoice": "fail"}
    assert "Total $0.875000; unknown tenant 14.3%" in html
    assert '<tr data-metric="costctx_receiver_accepted_items_total"><td>accepted items</td><td class="num">4<' in html
    # The policy's two spans: one ok, one past the soft threshold, so the budget is near its limit.
    assert '<tr data-policy="pol-1" data-state="near limit">' in html
    budget_row = html.split('<tr data-policy="pol-1"')[1].split("</tr>")[0]
    assert budget_row.count('<td class="num">1</td>') == 2  # spans ok 1, soft 1
    # Self-contained: refreshed by the browser, nothing loaded from anywhere.
    assert '<meta http-equiv="refresh" content="5">' in html
    assert "<script" not in html and "src=" not in html and "http://" not in html and "https://" not in html


def test_status_page_needs_the_bearer_token_when_auth_is_on(sink, make_sidecar, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    runner = make_sidecar(**token_auth(token_file))
    port = runner.sidecar.admin_port
    for path in ("/", "/status"):
        assert fetch(port, path)[0] == 401
        assert fetch(port, path, token="wrong")[0] == 401
        status, content_type, _ = fetch(port, path, token="s3cret")
        assert status == 200 and content_type.startswith("text/html")
    assert fetch(port, "/healthz")[0] == 200


def _chromium(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    chromium = require_tool("chromium", "chromium-browser", package="chromium")
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={tmp_path / 'chromium-profile'}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_status_page_in_headless_chromium(sink, make_sidecar, tmp_path):
    runner = make_sidecar()
    send_ops_workload(runner.sidecar.grpc_port)
    port = runner.sidecar.admin_port
    wait_for_matrix(port)
    url = f"http://127.0.0.1:{port}/status"

    dom = _chromium("--dump-dom", url, tmp_path=tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = parse(dom.stdout)
    assert {hop for hop, _ in page.cells} == set(HOPS)
    assert {field for _, field in page.cells} == set(ENVELOPE.context_keys)
    assert {key for key, cell in page.cells.items() if cell["data-repaired"] == "true"} == REPAIRED

    screenshot = tmp_path / "status.png"
    shot = _chromium(f"--screenshot={screenshot}", "--window-size=1000,760", url, tmp_path=tmp_path)
    assert shot.returncode == 0 and screenshot.exists(), shot.stderr[-2000:]
    print(f"\nstatus page screenshot: {screenshot}")
    colours = colour_counts(screenshot.read_bytes())
    # Passing and failing cells are coloured, and the repaired markers are drawn (six of them,
    # each a few hundred pixels of the marker blue).
    assert colours[PASS_RGB] > 10_000 and colours[FAIL_RGB] > 10_000
    assert colours[REPAIRED_MARK_RGB] > 6 * 300


def test_status_page_without_spans_says_so(make_sidecar):
    runner = make_sidecar()
    status, _, html = fetch(runner.sidecar.admin_port, "/status")
    assert status == 200
    assert "No spans yet." in html and "No LLM spans yet." in html
    assert 'data-repaired="true"' not in html


def test_pipeline_health_reads_the_registry_the_page_shows():
    from costctx.exporters.otlp.metrics import ExporterMetrics
    from costctx.receivers.otlp.metrics import ReceiverMetrics
    from costctx.telemetry.health import budget_summary, pipeline_health
    from costctx.telemetry.metrics import SidecarMetrics

    metrics = SidecarMetrics()
    exporter, receiver = ExporterMetrics(metrics), ReceiverMetrics(metrics)
    rows = {row["name"]: row for row in pipeline_health(metrics.registry)}
    assert rows["send failed items"]["total"] == 0  # shown as 0 before the first failure
    exporter.export_failed_items.labels("traces", "otlp").inc(7)
    exporter.export_failed_items.labels("traces", "otlp/backup").inc(2)
    rows = {row["name"]: row for row in pipeline_health(metrics.registry)}
    assert rows["send failed items"]["total"] == 9
    assert rows["send failed items"]["by"] == {"otlp": 7, "otlp/backup": 2}
    assert budget_summary(metrics.registry) == []
    receiver.pipeline_duration.labels("traces").observe(0.002)
    receiver.pipeline_duration.labels("traces").observe(0.004)
    rows = {row["name"]: row for row in pipeline_health(metrics.registry)}
    assert rows["mean pipeline latency (ms)"]["total"] == pytest.approx(3.0)
    assert rows["mean pipeline latency (ms)"]["by"] == {"traces": pytest.approx(3.0)}


def test_budget_summary_puts_policies_nearest_their_limit_first():
    from costctx.processors.budget.metrics import budget_metrics
    from costctx.telemetry.health import budget_summary
    from costctx.telemetry.metrics import ComponentMetrics, SidecarMetrics

    sidecar = SidecarMetrics()
    metrics = budget_metrics(ComponentMetrics(sidecar, "processor", "budget"))
    metrics.decisions.labels("calm", "allow").inc(5)
    metrics.span_states.labels("calm", "ok").inc(9)
    metrics.decisions.labels("soft", "allow").inc(3)
    metrics.span_states.labels("soft", "soft").inc(2)
    metrics.decisions.labels("hard", "block").inc(1)
    metrics.span_states.labels("tripped", "tripped").inc(1)
    # A second budget processor with the same policy id: its counts add up.
    budget_metrics(ComponentMetrics(sidecar, "processor", "budget/b")).span_states.labels("calm", "ok").inc(1)
    rows = budget_summary(sidecar.registry)
    assert [(r["policy"], r["state"]) for r in rows] == [
        ("hard", "over limit"), ("tripped", "over limit"), ("soft", "near limit"), ("calm", "ok")]
    assert rows[2]["soft"] == 2 and rows[2]["allow"] == 3 and rows[3]["ok"] == 10
