"""The dashboard in headless Chromium (Debian's package, driven by Playwright) against a served
ledger: pages load, every chart draws data, a member sees only its own data and cannot read
another member's, an operator sees all, a dispute filed from the page records its evidence."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coordinator.ledger import Ledger
from coordinator.service.broker import free_port
from coordinator.web import auth
from tests.audit.community import Community, build

CHARTS = (
    "chart-power",
    "chart-microgrid",
    "chart-price",
    "chart-traded",
    "chart-bill",
    "chart-voltage",
    "chart-limits",
)


def chromium() -> str:
    for cand in (os.environ.get("CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"):
        if cand and Path(cand).exists():
            return cand
    raise RuntimeError("chromium is not installed (apt-get install chromium)")


def charger(led: Ledger, t: int) -> None:
    """CP-1: alice's wallbox, online with a session running, its newest profile refused (with a
    reason that is markup: shown as text), two of its three cross-checks disagreeing."""
    from coordinator.chargers.service import bind
    from coordinator.ledger.queries import chargers as q

    bind(led, "CP-1", "alice", t, "wallbox-password-0123456789")
    q.set_state(led, "CP-1", q.REFUSED, "<b>TxProfile</b> Rejected", t + 100)
    q.start_session(led, "CP-1", 1, "tag", t + 10, 10_000)
    q.add_meter(led, "CP-1", t + 10, 10_000, 0, None, 1)
    q.add_meter(led, "CP-1", t + 90, 12_345, 7_400, None, 1)
    q.add_profile(led, "CP-1", t, 16_000, "TxProfile", "Rejected", t + 20)
    for k, ok in enumerate((True, False, False)):
        q.add_check(led, t - 2700 + 900 * k, "CP-1", 2_000_000, 1_000_000, ok)


def _when(t: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str], Community]]:
    c = build(tmp_path_factory.mktemp("browser"))
    with Ledger.open(c.ledger) as led:
        tokens = {m: auth.issue(led, m, now=c.start) for m in ("alice", "bob")}
        tokens["operator"] = auth.issue(led, None, now=c.start)
        charger(led, c.start)
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "coordinator.cli",
            "dashboard",
            "serve",
            "--config",
            str(c.config),
            "--listen",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("peergrid dashboard: http://127.0.0.1:"), line + proc.stdout.read()
        yield f"http://127.0.0.1:{port}", tokens, c
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium(), headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def _open(browser: Any, url: str, token: str) -> Any:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{url}/#token={token}")
    page.wait_for_selector("body[data-loaded]", timeout=15_000)
    page.errors = errors
    return page


def _points(page: Any, chart: str) -> int:
    return int(page.get_attribute(f"#{chart}", "data-points") or 0)


def test_member_dashboard_shows_charts_and_only_its_own_data(served: Any, browser: Any) -> None:
    url, tokens, c = served
    page = _open(browser, url, tokens["alice"])
    assert page.url == f"{url}/"  # the token left the address bar (kept in local storage)
    assert page.text_content("#who") == "member alice"
    for chart in CHARTS:
        assert _points(page, chart) > 0, chart
    # power: one line, alice's, with a point per bucket; the microgrid chart has import/export/net
    names = page.eval_on_selector_all("#chart-power path.series", "ps => ps.map(p => p.dataset.name)")
    assert names == ["alice"] and _points(page, "chart-power") >= 60  # 2 h in 90 s buckets
    assert page.eval_on_selector_all("#chart-microgrid path.series", "ps => ps.length") == 3
    assert _points(page, "chart-price") == 8 and _points(page, "chart-bill") == 8
    body = page.inner_text("main")
    for other in ("bob", "carol", "dave"):
        assert other not in page.inner_text("#boards") and other not in page.inner_text("#bids")
    assert "b-alice" in page.inner_text("#boards") and "online" in page.inner_text("#boards")
    assert "Total" in page.inner_text("#bill") and "Rejected" not in body
    assert page.is_hidden("#pick")  # no member picker for a member
    assert page.is_hidden("#chargers-card")  # nor the chargers (operators only; not even requested)
    assert page.errors == []  # no script error, no failed request
    # the page's own token cannot read another member, whatever the page asks for
    status = page.evaluate(
        """async () => {
            const t = localStorage.getItem('peergrid-token');
            const r = await fetch('/api/members/bob/bill', {headers: {Authorization: 'Bearer ' + t}});
            const s = await fetch('/api/trades?member=bob', {headers: {Authorization: 'Bearer ' + t}});
            return [r.status, s.status];
        }"""
    )
    assert status == [403, 403]
    # flag an interval from the page: recorded with its evidence
    page.fill("#dispute-reason", "export looks low")
    page.click("#dispute-form button")
    page.wait_for_selector("#disputes td:has-text('export looks low')", timeout=10_000)
    assert "recorded with its evidence" in page.inner_text("#dispute-msg")
    page.close()
    with Ledger.open(c.ledger) as led:
        from coordinator.transaction.audit.dispute import disputes

        (d,) = disputes(led, "alice")
        assert d.reason == "export looks low" and d.evidence["spans"][0]["board"] == "b-alice"


def test_operator_sees_everyone(served: Any, browser: Any) -> None:
    url, tokens, _ = served
    page = _open(browser, url, tokens["operator"])
    assert page.text_content("#who").startswith("operator")
    names = page.eval_on_selector_all("#chart-power path.series", "ps => ps.map(p => p.dataset.name)")
    assert names == ["alice", "bob", "carol", "dave"]
    boards = page.inner_text("#boards")
    assert all(f"b-{m}" in boards for m in ("alice", "bob", "carol", "dave"))
    assert "Rejected messages: bad_signature 2, replay 1" in page.inner_text("#rejections")
    assert "b-alice" in page.inner_text("#curtailments")
    assert "b-bob" in page.inner_text("#redispatches") and "trafo:T1" in page.inner_text("#redispatches")
    assert "97.9 (T1)" in page.inner_text("#checks")
    # pick one member: the charts follow
    page.select_option("#member", "carol")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#chart-power path.series')]"
        ".map(p => p.dataset.name).join() === 'carol'"
    )
    page.wait_for_function("() => document.getElementById('bill-period').textContent.startsWith('carol')")
    assert page.errors == []
    page.close()


def test_operator_sees_the_chargers_and_one_bound_through_the_api(served: Any, browser: Any) -> None:
    url, tokens, c = served
    page = _open(browser, url, tokens["operator"])
    assert page.is_visible("#chargers-card")
    rows = page.eval_on_selector_all(
        "#chargers tr", "trs => trs.map(tr => [...tr.cells].map(td => td.textContent))"
    )
    assert rows == [
        [
            "charger",
            "member",
            "state",
            "last seen",
            "password set",
            "session kWh",
            "newest limit A",
            "disagreements",
        ],
        [
            "CP-1",
            "alice",
            "refused (<b>TxProfile</b> Rejected)",
            _when(c.start + 100),
            _when(c.start),
            "2.345",
            "16.0 Rejected",
            "2 of 3",
        ],
    ]
    assert page.eval_on_selector_all("#chargers b", "bs => bs.length") == 0  # text, not markup
    # bound from the page's own token: the password comes back once, the next load shows the row
    answer = page.evaluate(
        """async () => {
            const t = localStorage.getItem('peergrid-token');
            const r = await fetch('/api/chargers/WB-7', {method: 'PUT',
                headers: {Authorization: 'Bearer ' + t, 'Content-Type': 'application/json'},
                body: JSON.stringify({member: 'bob'})});
            return [r.status, await r.json()];
        }"""
    )
    assert answer[0] == 201 and answer[1]["member"] == "bob" and len(answer[1]["password"]) == 32
    page.reload()
    page.wait_for_selector("body[data-loaded]", timeout=15_000)
    row = page.eval_on_selector_all(
        "#chargers tr", "trs => trs.slice(2).map(tr => [...tr.cells].map(td => td.textContent))"
    )
    assert row == [["WB-7", "bob", "unseen", "never", _when(answer[1]["password_set"]), "-", "-", "0 of 0"]]
    # the member picker limits the chargers too
    page.select_option("#member", "alice")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#chargers tr')].slice(1).map(r => r.cells[0].textContent)"
        ".join() === 'CP-1'"
    )
    assert page.errors == []
    page.close()
    with Ledger.open(c.ledger) as led:
        from coordinator.ledger.queries import chargers as q

        assert [x.charger_id for x in q.chargers(led)] == ["CP-1", "WB-7"]


def test_a_bad_token_gets_the_sign_in_form(served: Any, browser: Any) -> None:
    url, tokens, _ = served
    page = browser.new_page()
    page.goto(f"{url}/#token=pg_wrong")
    page.wait_for_selector("#login:not([hidden])", timeout=10_000)
    assert "not valid" in page.inner_text("#login-error")
    page.fill("#token", tokens["bob"])
    page.click("#login-form button")
    page.wait_for_selector("body[data-loaded]", timeout=15_000)
    assert page.text_content("#who") == "member bob"
    page.close()


def test_the_page_runs_under_its_policy_and_cannot_be_framed(served: Any, browser: Any) -> None:
    """Under the page's Content-Security-Policy every chart and legend still draws (no inline
    style or script is refused: that shows as a console error); another site cannot frame the
    signed-in page to have its "flag" or export buttons clicked through a decoy."""
    url, tokens, _ = served
    page = _open(browser, url, tokens["operator"])
    swatches = page.eval_on_selector_all(
        "#legend-microgrid i", "is => is.map(i => getComputedStyle(i).backgroundColor)"
    )
    assert swatches == ["rgb(214, 39, 40)", "rgb(44, 160, 44)", "rgb(85, 85, 85)"]
    assert page.errors == []
    page.close()
    # a decoy page of another site (another origin: another port) frames the signed-in page
    decoy = browser.new_page()
    with _decoy_site(f'<iframe src="{url}/"></iframe>') as other:
        decoy.goto(other)
        decoy.wait_for_timeout(1500)
    (framed,) = [f for f in decoy.frames if f != decoy.main_frame]
    assert framed.evaluate("() => document.getElementById('dispute-form') !== null") is False
    decoy.close()


@contextlib.contextmanager
def _decoy_site(html: str) -> Iterator[str]:
    """A page served from another local port (a local address: Chromium blocks a public page
    from framing the local dashboard anyway, which would prove nothing)."""
    import http.server
    import threading

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
