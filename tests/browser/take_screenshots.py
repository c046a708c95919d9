"""Screenshots of the search page on the sample library, taken by the headless Chromium the browser
tests use: ``./dev python -m tests.browser.take_screenshots`` after ``./dev main``.

The index and checkpoints under ``var/`` are copied to a temporary folder first, so that a running
pipeline or service keeps its embedded shard. The model is the service's default (OPENCLIP_* from
the environment, else the offline synthetic-world model). Writes ``docs/img/page-search.png``
(a text query with patch rerank: thumbnails with their best-patch boxes) and
``docs/img/page-moments.png`` (the same query's best 10 frames as moments, 0.5 s gap).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from search_service.app import create_app
from search_service.config import service_settings_from_env
from tests.browser.conftest import CHROMEDRIVER, CHROMIUM
from tests.servers import running_uvicorn

REPO = Path(__file__).resolve().parents[2]
# Every thumbnail in the window has its picture (they load lazily, as they come into view).
VISIBLE_IMAGES_LOADED = (
    "return [...document.querySelectorAll(arguments[0] + ' img')]"
    ".filter(i => i.getBoundingClientRect().top < innerHeight && i.getBoundingClientRect().right < innerWidth)"
    ".every(i => i.complete && i.naturalWidth > 0)"
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--var", type=Path, default=REPO / "var", help="the folder ./dev main wrote")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    parser.add_argument("--query", default="a yellow triangle")
    parser.add_argument("--alpha-steps", type=int, default=10, help="slider steps of 0.05 left from the default alpha 0.3 (6 or more = alpha 0)")
    args = parser.parse_args(argv)
    assert CHROMIUM and CHROMEDRIVER, "install chromium and chromium-driver first"
    with tempfile.TemporaryDirectory(prefix="framesearch-shots-") as tmp:
        for name in ("qdrant", "checkpoints"):
            shutil.copytree(args.var / name, Path(tmp) / name)
        os.environ["QDRANT_PATH"] = str(Path(tmp) / "qdrant")
        os.environ["CHECKPOINT_DIR"] = str(Path(tmp) / "checkpoints")
        os.environ.pop("QDRANT_URL", None)
        app = create_app(service_settings_from_env())
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1360,1000", "--hide-scrollbars"):
            options.add_argument(arg)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        wait = WebDriverWait(driver, 120, poll_frequency=0.1)
        try:
            with running_uvicorn(app) as base:
                driver.get(f"{base}/")
                wait.until(lambda d: d.find_element(By.ID, "model").text != "model…")
                driver.find_element(By.ID, "alpha").send_keys(Keys.LEFT * args.alpha_steps)
                driver.find_element(By.ID, "query").send_keys(args.query)
                driver.find_element(By.ID, "go").click()
                wait.until(lambda d: d.find_element(By.ID, "results").get_attribute("data-paint-ms") is not None)
                paint_ms = driver.find_element(By.ID, "results").get_attribute("data-paint-ms")
                print(f"'{args.query}': {driver.find_element(By.ID, 'status').text}; painted {paint_ms} ms after the response")
                wait.until(lambda d: d.execute_script(VISIBLE_IMAGES_LOADED, "#results"))
                args.out.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(args.out / "page-search.png"))
                driver.find_element(By.ID, "viewmoments").click()
                for field, value in (("topk", "10"), ("gap", "0.5")):  # the best 10 frames, split where they are > 0.5 s apart
                    driver.find_element(By.ID, field).clear()
                    driver.find_element(By.ID, field).send_keys(value)
                driver.find_element(By.ID, "go").click()
                wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#moments .moment"))
                wait.until(lambda d: d.execute_script(VISIBLE_IMAGES_LOADED, "#moments"))
                driver.save_screenshot(str(args.out / "page-moments.png"))
                print(f"wrote {args.out / 'page-search.png'} and {args.out / 'page-moments.png'}")
        finally:
            driver.quit()


if __name__ == "__main__":
    main()
