"""The web explorer in a real headless Chromium (Debian's `chromium` through `chromedriver`, driven by
Selenium; nothing is downloaded) against a live 4-miner devnet: the overview's height rises with no
reload (WebSocket), a finalized round's page shows its winners and heatmap, the search box finds a tx
by its hash, a winner's account page shows its reward, the leaderboard lists every miner, and the
browser console logs no error. Screenshots of the overview and the round page are saved in the test's
output directory (printed)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pocl.node.cluster import LocalCluster, NodeProcess, wait_until

from tests.support.openapi_check import check

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ROUND_TIMEOUT_S = 150.0  # round 1 includes four TensorFlow start-ups on a busy 2-core machine
PAGE_TIMEOUT_S = 30.0


def finalized_with_winners(node: NodeProcess) -> dict[str, Any] | None:
    """The newest final round with winners, from `/rounds` (None while there is none)."""
    try:
        rounds = node.get("/rounds?limit=10")["rounds"]
    except Exception:
        return None
    return next((r for r in rounds if r["final"] and r["winners"]), None)


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Headless Chromium at a laptop's window size, with the console log readable."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(
            f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}); .ci/run installs them"
        )
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (the test extra) is not installed")
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never download a driver or browser
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1440,900",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(PAGE_TIMEOUT_S)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


def test_explorer_in_a_browser_on_a_live_devnet(
    mining_cluster: Callable[..., LocalCluster], browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    cluster = mining_cluster(4)
    cluster.start()
    node = cluster.nodes[0]
    summary = wait_until(lambda: finalized_with_winners(node), ROUND_TIMEOUT_S, "a final round with winners")
    r = summary["round"]
    rec = node.get(f"/rounds/{r}")
    winner = rec["winners"][0]
    base = node.rpc_url + "/explorer"
    wait = WebDriverWait(browser, PAGE_TIMEOUT_S)

    def testid(name: str) -> Any:
        return browser.find_element(By.CSS_SELECTOR, f'[data-testid="{name}"]')

    def testids(name: str) -> list[Any]:
        return browser.find_elements(By.CSS_SELECTOR, f'[data-testid="{name}"]')

    def open_page(fragment: str, page: str) -> None:
        browser.get(f"{base}#{fragment}")
        wait_for_page(page)

    def wait_for_page(page: str) -> None:
        def shown(d: Any) -> bool:
            main = d.find_element(By.ID, "page")
            return (
                main.get_attribute("data-page") in (page, "error")
                and main.get_attribute("data-loaded") == "true"
            )

        wait.until(shown)
        error = testid("error")
        assert not error.is_displayed(), error.text
        assert browser.find_element(By.ID, "page").get_attribute("data-page") == page

    def height_shown() -> int:
        return int(testid("height").text.replace(",", ""))

    # the overview: chain, live height (no reload), peers, validators, round and phase, chart, latest lists
    status = node.get("/status")
    open_page("/", "overview")
    assert testid("chain-id").text == status["chain_id"]
    assert int(testid("validators").text) == 4 and int(testid("peers").text) >= 1
    start = height_shown()
    wait.until(lambda _d: height_shown() >= start + 2)  # from /events only: the page is not reloaded
    wait.until(lambda _d: testid("live").text == "live")
    assert testid("round-current").text.startswith("round ") and testid("round-phase").text
    assert testid("block-interval").text.endswith(" s")
    assert int(testid("accuracy-chart").get_attribute("data-points")) >= 1
    assert testids("round-row") and testids("block-row")
    overview_png = tmp_path / "explorer-overview.png"
    assert browser.save_screenshot(str(overview_png))

    # a finalized round: winners, the heatmap (predictor x shard), scores, rewards, the model download
    open_page(f"/round/{r}", "round")
    assert testid("round-number").text == str(r) and testid("round-status").text == "final"
    shown = [w.find_element(By.TAG_NAME, "a").get_attribute("title") for w in testids("winner")]
    assert shown == rec["winners"]
    matrix = rec["score_matrix"]
    assert len(testids("heatmap-row")) == len(matrix["rows"]) >= 2
    assert len(testids("heatmap-cell")) == len(matrix["rows"]) * len(matrix["columns"])
    assert len(testids("score-row")) == len(rec["scores"])
    assert len(testids("round-reward-row")) == len(rec["rewards"]) >= 1
    assert testid("model-hash").text == rec["global_model_hash"]
    assert testid("model-download").get_attribute("href").endswith(f"/models/global?round={r}&format=npz")
    round_png = tmp_path / f"explorer-round-{r}.png"
    assert browser.save_screenshot(str(round_png))

    # search: a tx by its hash (a winner's own PoCL tx)
    tx = node.get(f"/txs?account={winner}&limit=1")["txs"][0]
    box = testid("search-input")
    box.clear()
    box.send_keys(tx["hash"])
    testid("search-button").click()
    wait_for_page("tx")
    assert testid("tx-hash").text == tx["hash"] and testid("tx-height").text == f"{tx['height']:,}"

    # a winner's account: balance and stake, and the reward of round r in its history
    open_page(f"/account/{winner}", "account")
    assert testid("account-address").text == winner
    rewards = testids("reward-row")
    assert rewards and f"round {r}" in [row.find_element(By.TAG_NAME, "a").text for row in rewards]
    assert int(testid("rewards-total").text.replace(",", "")) > 0
    assert browser.save_screenshot(str(tmp_path / "explorer-account.png"))

    # the leaderboard: every miner, the winner with its win and reward; its JSON answers its schema
    open_page("/miners", "miners")
    assert len(testids("miner-row")) == 4
    assert browser.save_screenshot(str(tmp_path / "explorer-miners.png"))
    doc = node.get("/openapi.json")
    board = node.get("/miners")
    check(doc, "/miners", "get", 200, board)
    check(doc, "/rounds", "get", 200, node.get("/rounds"))
    check(doc, "/accounts/{address}/rounds", "get", 200, node.get(f"/accounts/{winner}/rounds"))
    mine = next(m for m in board["miners"] if m["address"] == winner)
    assert mine["wins"] >= 1 and mine["rewards"] > 0

    # no page logged an error (failed request, exception, CSP violation)
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe
    print(
        f"\nexplorer screenshots: {overview_png} {round_png} (and the account and miners pages beside them)"
    )
    assert os.path.getsize(overview_png) > 0 and os.path.getsize(round_png) > 0
