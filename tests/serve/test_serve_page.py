"""The upload page in a real browser: Debian's chromium and chromedriver, driven headless by
selenium. Uploads a photo, waits for the bars, checks the top-1 label shown is the API's, and
saves a screenshot (in the test's folder; CN_SCREENSHOT_DIR keeps a copy)."""
import json
import os
import shutil

import pytest

from serve_client import Client

selenium = pytest.importorskip("selenium", reason="selenium is not installed (pip)")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("no browser: apt-get install chromium chromium-driver "
                    "(scripts/install-deps.sh does)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1100,900"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver), options=opts)


@pytest.mark.slow
def test_page_shows_the_api_top1(server, photos, tmp_path):
    s = server()
    photo = next(p for p in photos if p.endswith("coffee.png")) if any(
        p.endswith("coffee.png") for p in photos) else photos[0]
    with open(photo, "rb") as f:
        api = json.loads(Client(s).send("POST", "/v1/models/mnet/classify", f.read(),
                                        {"Content-Type": "image/png"}).body)
    d = browser()
    try:
        d.get(s.url("/"))
        WebDriverWait(d, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#model option"))
        d.find_element(By.ID, "file").send_keys(photo)
        WebDriverWait(d, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".card[data-done]"))
        card = d.find_element(By.CSS_SELECTOR, ".card")
        assert card.get_attribute("data-done") == "1", card.text
        top1 = card.find_element(By.CSS_SELECTOR, ".top1")
        assert top1.text == api["top"][0]["label"]
        assert int(top1.get_attribute("data-index")) == api["top"][0]["index"]
        assert len(card.find_elements(By.CSS_SELECTOR, ".row")) == 5
        WebDriverWait(d, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "canvas.cam"))
        shot = tmp_path / "serve_page.png"
        d.save_screenshot(str(shot))
        assert shot.stat().st_size > 10000
        if os.environ.get("CN_SCREENSHOT_DIR"):
            shutil.copy(shot, os.environ["CN_SCREENSHOT_DIR"])
        logs = [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
        assert not logs, logs
    finally:
        d.quit()
    assert s.stop() == 0
