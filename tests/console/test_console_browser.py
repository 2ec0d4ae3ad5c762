"""The console in a real headless Chromium against a real dev node with data in it.

One ``medchaind dev`` process (module scope) with the console on, filled by the client
helpers as an EHR, a pharmacy's systems, a sponsor and a billing office would fill it
(populate.py); one browser (module scope) for every view. Debian's ``chromium`` and
``chromium-driver`` (scripts/bootstrap.sh installs them); without them these tests skip.

Screenshots go to a temporary directory, or to docs/img/ (the ones docs/console.md shows)
with ``MEDCHAIND_UPDATE_SCREENSHOTS=1``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from populate import CANARIES, GTIN, NCT, World, populate

from medchaind.client import Client
from medchaind.crypto import KeyPair
from medchaind.files import save_keystore
from medchaind.testing.nodeproc import NodeProcess, _cmd, free_port_range
from medchaind.testing.wait import wait_until

pytestmark = pytest.mark.e2e

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,900", "--force-device-scale-factor=1")


class Net:
    def __init__(self, node: NodeProcess, base: str, token: str, world: World) -> None:
        self.node, self.base, self.token, self.world = node, base, token, world

    def url(self, path: str) -> str:
        return self.base + path

    def http(self, token: str | None = "") -> httpx.Client:
        t = self.token if token == "" else token
        return httpx.Client(base_url=self.base, headers={"authorization": f"Bearer {t}"} if t else {}, timeout=30)


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    root = Path(tempfile.mkdtemp(prefix="mccb-"))
    port = free_port_range(1)
    node = NodeProcess(root / "node", root / "node.log", env={"MEDCHAIND_CONSOLE_LISTEN": f"127.0.0.1:{port}"})
    try:
        node.start()
        assert f"web console: http://127.0.0.1:{port}/?token=" in node.log()  # what `dev` prints
        token = (root / "node" / "console.token").read_text().strip()
        world = populate(node.ipc, root / "node")
        yield Net(node, f"http://127.0.0.1:{port}", token, world)
    finally:
        if node.proc is not None and node.proc.poll() is None:
            node.stop(signal.SIGKILL)
        print("\n".join(node.log().splitlines()[-30:]))
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(net: Net) -> Iterator[Any]:
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("Debian's chromium and chromium-driver are not installed (scripts/bootstrap.sh installs them)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="mccb-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        driver.get(net.url("/?token=" + net.token))  # once: then the cookie
        assert "?token" not in driver.current_url
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def shots() -> Iterator[Path]:
    if os.environ.get("MEDCHAIND_UPDATE_SCREENSHOTS"):
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        yield DOCS_IMG
        return
    d = Path(tempfile.mkdtemp(prefix="mccb-shots-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def shoot(driver: Any, shots: Path, name: str) -> None:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(max(int(height) + 140, 600), 2600))
    path = shots / f"console-{name}.png"
    assert driver.save_screenshot(str(path)) and path.stat().st_size > 10_000
    driver.set_window_size(1280, 900)


def by_css(driver: Any, css: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css)


def all_css(driver: Any, css: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, css))


def text(driver: Any) -> str:
    return str(by_css(driver, "main").text)


# ------------------------------------------------------------------ the test
#
# One test runs every check in order on one network and one browser: pytest-xdist
# (scripts/test.sh runs -n 2) would otherwise hand the checks to both workers and start
# a node and a Chromium on each.


def test_the_console_in_a_browser(net: Net, browser: Any, shots: Path) -> None:
    check_without_the_token_nothing_is_served(net)
    check_operator_views(net, browser, shots)
    check_follow_a_block_to_its_txs(net, browser, shots)
    check_a_new_block_appears_live(net, browser)
    check_domain_views(net, browser, shots)
    check_no_page_shows_a_canary(net)
    check_started_nodes_print_the_console_url(net)
    check_the_patients_own_view(net, browser, shots)


# ------------------------------------------------------------------ the checks


def check_without_the_token_nothing_is_served(net: Net) -> None:
    with net.http(token=None) as c:
        for path in ("/", "/blocks", "/block/1", f"/m/trials/trial?trial={NCT}", "/events", "/static/console.js"):
            r = c.get(path)
            assert r.status_code == 401 and "access token" in r.text, path
    with net.http(token="not-the-token") as c:
        assert c.get("/").status_code == 401


def check_operator_views(net: Net, browser: Any, shots: Path) -> None:
    d = browser
    with Client(net.node.ipc) as c:
        head = c.head()["height"]
    d.get(net.url("/"))
    assert int(by_css(d, "#head-height").text) >= head
    rows = all_css(d, "#recent-blocks tbody tr")
    assert len(rows) == 20 and "claims.submit" in text(d) and "supply.capture" in text(d)
    assert len(all_css(d, "svg.chart")) == 3
    shoot(d, shots, "overview")
    expected = {
        "/blocks": "identity.register", "/consensus": "Votes this round", "/authorities": "Scheduled changes",
        "/peers": "no P2P network", "/mempool": "lane", "/sync": "in step",
    }
    for path, needle in expected.items():
        d.get(net.url(path))
        assert needle in text(d), path
    d.get(net.url("/consensus"))
    shoot(d, shots, "consensus")


def check_follow_a_block_to_its_txs(net: Net, browser: Any, shots: Path) -> None:
    d = browser
    d.get(net.url("/"))
    # a block with a claim in it (the world's two claims may share a block or not)
    row = next(r for r in all_css(d, "#recent-blocks tbody tr") if "claims.submit × " in r.text)
    in_row = sum(int(n) for n in re.findall(r"\S+ × (\d+)", row.text))
    height = row.get_attribute("data-height")
    row.find_element("css selector", "td a").click()
    assert d.current_url.endswith(f"/block/{height}") and by_css(d, "#block-height").text == height
    links = all_css(d, "#block-txs tbody a")
    assert len(links) == in_row >= 1 and "exact_duplicate" not in text(d)
    shoot(d, shots, "block")
    claim_row = next(r for r in all_css(d, "#block-txs tbody tr") if "claims.submit" in r.text)
    claim_row.find_element("css selector", "a").click()
    assert "/tx/0x" in d.current_url
    assert "claims.submit" in text(d) and f"block {height}" in text(d)
    shoot(d, shots, "tx")


def check_a_new_block_appears_live(net: Net, browser: Any) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    d = browser
    d.get(net.url("/"))
    WebDriverWait(d, 10).until(lambda drv: "on" in by_css(drv, "#live").get_attribute("class"))
    before = int(by_css(d, "#head-height").text)
    with Client(net.node.ipc) as c:
        st = c.register_identity(KeyPair.generate(), "patient")
    assert st["receipt"]["ok"] and st["height"] > before
    WebDriverWait(d, 10).until(
        lambda drv: all_css(drv, f'#recent-blocks tbody tr[data-height="{st["height"]}"]'))
    row = by_css(d, f'#recent-blocks tbody tr[data-height="{st["height"]}"]')
    assert "identity.register × 1" in row.text and "new" in row.get_attribute("class")
    assert int(by_css(d, "#head-height").text) == st["height"]
    assert d.execute_script("return performance.getEntriesByType('navigation').length") == 1  # no reload


def check_domain_views(net: Net, browser: Any, shots: Path) -> None:
    d, w = browser, net.world
    # supply: a unit's custody (three parties), its containers, the lot's recall, the open case
    d.get(net.url("/m/supply"))
    form = by_css(d, "#form-unit")
    form.find_element("name", "oid").send_keys(w.oids[0])
    form.submit()
    body = text(d)
    assert "dispensed" in body and "Custody chain" in body and "Container tree" in body
    assert [t.text for t in all_css(d, "svg.graph")[0].find_elements("css selector", "text.gl")] == [
        "0614141000012", "0614141000029", "0614141000036"]
    assert "this unit" in all_css(d, "svg.graph")[1].text and "counterfeit" in body
    shoot(d, shots, "supply-unit")
    by_css(d, "main dl.kv dd a").click()  # the lot
    assert "recalled, class II" in text(d) and "label misprint" in text(d) and GTIN in text(d)
    d.get(net.url("/m/supply/cases"))
    assert "counterfeit" in text(d) and "suspect" in text(d)
    # trials: registration, the amendment, and the switched outcomes highlighted
    d.get(net.url(f"/m/trials/trial?trial={NCT}"))
    body = text(d)
    assert "GLUCO-3" in body and "amendment: protocol v2" in body and "new safety information" in body
    switched = all_css(d, "tr.tone-bad")
    assert len(switched) >= 2 and any("role swapped" in r.text for r in switched)
    shoot(d, shots, "trial")
    # claims: the duplicate's lifecycle with its flag and the chain's denial
    d.get(net.url(f"/m/claims/claim?claim_id={w.duplicate_id}"))
    body = text(d)
    assert "denied" in body and "exact_duplicate" in body and "adjudicated by chain" in body
    shoot(d, shots, "claim")
    # records: the patient's audit log: the consents and the doctor's read
    d.get(net.url(f"/m/records/audit?patient={w.patient}"))
    body = text(d)
    assert "consent permit" in body and "\nread\n" in body and "Observation" in body
    shoot(d, shots, "audit")


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for k, v in attrs:
            if k == "href" and v:
                self.links.append(v)


def check_no_page_shows_a_canary(net: Net) -> None:
    """Crawl every page the console links to (and each module view with this chain's
    ids): the canaries planted in the record, the claim and the trial document are on
    no page, and nothing on any page errors."""
    w = net.world
    todo = ["/", f"/m/supply/unit?oid={w.oids[0]}", f"/m/supply/lot?gtin={GTIN}&lot_id=0x" + "00" * 32,
            f"/m/trials/trial?trial={NCT}", f"/m/claims/claim?claim_id={w.claim_id}",
            f"/m/claims/claim?claim_id={w.duplicate_id}", f"/m/records/audit?patient={w.patient}",
            "/m/supply/cases?status=all", "/m/supply/detections", "/m/trials/list", f"/tx/{w.tx_hashes[0]}"]
    seen: set[str] = set()
    statuses: dict[int, int] = {}
    with net.http() as c:
        while todo and len(seen) < 600:
            path = todo.pop()
            if path in seen:
                continue
            seen.add(path)
            r = c.get(path)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            assert r.status_code in (200, 400, 404), (path, r.status_code)
            for canary in CANARIES:
                assert canary not in r.text, f"{canary} on {path}"
            if "text/html" not in r.headers.get("content-type", ""):
                continue
            parser = _Links()
            parser.feed(r.text)
            for href in parser.links:
                u = urlsplit(urljoin("http://x" + path, href))
                nxt = u.path + ("?" + u.query if u.query else "")
                if u.netloc == "x" and not nxt.startswith(("/events", "/static")) and nxt not in seen:
                    todo.append(nxt)
        for asset in ("/static/console.js", "/static/console.css"):
            assert c.get(asset).status_code == 200
    assert statuses[200] >= 60 and len(seen) < 600  # every block, its txs and the module pages


def check_started_nodes_print_the_console_url(net: Net) -> None:
    wait_until(lambda: "console listening url=" in net.node.log(), timeout=5, what="the console's log line")
    assert net.token not in net.node.log().split("web console:")[0]  # the token is printed once, in the banner


def check_the_patients_own_view(net: Net, browser: Any, shots: Path) -> None:
    """``medchain console --key patient``: the patient's records decrypted in the patient's
    process (so the canary of the record is there, and only there), who read them."""
    d, w = browser, net.world
    assert w.patient_keys is not None
    home = Path(tempfile.mkdtemp(prefix="mccb-home-"))
    (home / "keys").mkdir()
    save_keystore(home / "keys" / "patient.json", w.patient_keys, "patient passphrase")
    (home / "pass").write_text("patient passphrase\n")
    log = home / "console.log"
    port = free_port_range(1)
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [*_cmd("medchain"), "--ipc", str(net.node.ipc), "--home", str(home), "--passphrase-file",
             str(home / "pass"), "console", "--key", "patient", "--listen", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=err)
    try:
        wait_until(lambda: "patient console: " in log.read_text(), timeout=30, what="the patient console")
        url = log.read_text().split("patient console: ")[1].split()[0]
        assert url.startswith(f"http://127.0.0.1:{port}/?token=")
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 401
        d.get(url)
        rows = all_css(d, "#records tbody tr")
        assert len(rows) == 1 and "Observation" in rows[0].text
        rows[0].find_element("css selector", "a").click()
        resource = by_css(d, "#resource").text
        assert CANARIES[0] in resource and "mmHg" in resource  # decrypted here, in the patient's process
        shoot(d, shots, "patient")
        d.get(f"http://127.0.0.1:{port}/access")
        reads = by_css(d, "#reads").text
        assert "TREAT" in reads and "no" in reads and len(all_css(d, "#consents tbody tr")) == 2
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(home, ignore_errors=True)
