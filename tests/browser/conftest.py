"""A real headless Chromium (Debian's ``chromium`` + ``chromium-driver``) driven through Selenium.

Where the browser is not installed the browser tests are skipped, unless FRAMESEARCH_REQUIRE_BROWSER
is set (``.ci/run`` sets it after installing the packages): then a missing browser fails them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="session")
def browser() -> Iterator:
    """One headless Chromium for the session (each test opens its own server, so its own origin
    and sessionStorage)."""
    if not (CHROMIUM and CHROMEDRIVER):
        message = "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("FRAMESEARCH_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # --no-sandbox: CI runs as root, where Chromium refuses its sandbox.
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1000",
                "--disable-extensions", "--no-first-run", "--hide-scrollbars"):
        options.add_argument(arg)
    # Service(path) skips Selenium Manager, which would try to download a driver.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()
