"""Screenshots of the Dagster asset pages as a user sees them, from a live dagster-webserver,
taken with headless Chromium (Debian's ``chromium`` + ``chromium-driver``):

    ./dev python docs/dagster_screenshots.py        # writes docs/img/dagster-*.png

In a temporary folder: the sample library (``var/samples``, made if missing) plus the issue-12
pair - video 5 (3 good frames and 3 junk files) and video 6 (junk only) - embedded by the main job
into a throwaway DAGSTER_HOME as one multi-video ``video_pipeline`` run; then the webserver on that
home, and Chromium on

* ``dagster-partition.png``: frame_embeddings, partition 5 - its own figures, skipped-frames table,
  summary and check results;
* ``dagster-failed.png``: frame_embeddings, partition 6 - failed, with the observation saying why;
* ``dagster-checks.png``: the asset's checks, evaluated per partition;
* ``dagster-plots.png``: the asset's metadata plots (the flat ``seconds_*`` timings).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from pipelines.samples import ensure_sample_library  # noqa: E402
from tests.browser.conftest import CHROMEDRIVER, CHROMIUM  # noqa: E402
from tests.e2e.test_dagster_e2e import wait_location_loaded  # noqa: E402
from tests.servers import free_port, wait_http_ok  # noqa: E402

# file: (page, text to wait for, text of a tab to click first or None)
PAGES = {
    "dagster-partition.png": ("/assets/frame_embeddings?view=partitions&partition=5", "seconds_embed", None),
    "dagster-failed.png": ("/assets/frame_embeddings?view=partitions&partition=6", "failed", None),
    "dagster-checks.png": ("/assets/frame_embeddings?view=checks", "rows_match_manifest", "Partitions"),
    "dagster-events.png": ("/assets/frame_embeddings?view=events&partition=5", "seconds_embed", None),
}


def _click_text(driver: webdriver.Chrome, text: str, wait_s: float) -> bool:
    """Click the last button, link or tab whose text is ``text``, if one shows within ``wait_s``."""
    xpath = f"//*[self::button or self::a or @role='tab' or self::span][normalize-space(text())='{text}']"
    try:
        WebDriverWait(driver, wait_s, poll_frequency=0.5).until(lambda d: d.find_elements("xpath", xpath))
    except TimeoutException:
        return False
    driver.find_elements("xpath", xpath)[-1].click()
    time.sleep(1)
    return True


def make_library(tmp: Path) -> Path:
    """The sample videos plus video 5 (3 good + 3 junk frames) and video 6 (junk only)."""
    videos = tmp / "videos"
    shutil.copytree(ensure_sample_library(REPO / "var" / "samples"), videos)
    good = sorted((videos / "2").glob("frame_*.jpg"))[:3]
    for number, folder in ((5, videos / "5"), (6, videos / "6")):
        folder.mkdir()
        if number == 5:
            for f, path in enumerate(good):
                shutil.copyfile(path, folder / f"frame_{f:04d}.jpg")
        for f in (3, 4, 5):
            (folder / f"frame_{f:04d}.jpg").write_bytes(b"" if f == 3 else b"not a picture" * f)
    return videos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    args = parser.parse_args(argv)
    assert CHROMIUM and CHROMEDRIVER, "install chromium and chromium-driver first (apt-get install chromium chromium-driver)"
    with tempfile.TemporaryDirectory(prefix="dagster-shots-") as name:
        tmp = Path(name)
        home = tmp / "home"
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        videos = make_library(tmp)
        env = {
            **os.environ, "DAGSTER_HOME": str(home), "FRAMES_ROOT": str(videos), "CHECKPOINT_DIR": str(tmp / "var" / "checkpoints"),
            "QDRANT_PATH": str(tmp / "var" / "qdrant"), "PYTHONWARNINGS": "ignore",
        }
        env.pop("QDRANT_URL", None)
        main_job = subprocess.run(
            [sys.executable, "-m", "pipelines.main", "--var", str(tmp / "var"), "--videos", str(videos), "--query", "a red star"],
            cwd=REPO, env=env, capture_output=True, text=True,
        )
        print("\n".join(line for line in main_job.stdout.splitlines() if line.startswith("[main] video")))
        port = free_port()
        log = open(tmp / "webserver.log", "w")
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1500,1500", "--hide-scrollbars"):
            options.add_argument(arg)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_http_ok(f"{base}/server_info", 180, alive=lambda: server.poll() is None)
            wait_location_loaded(base, 300)
            args.out.mkdir(parents=True, exist_ok=True)
            for filename, (path, text, click) in PAGES.items():
                driver.get(base + path)
                _click_text(driver, "Skip", wait_s=10)  # the first visit's "Join the Dagster community" dialog
                if click:
                    _click_text(driver, click, wait_s=60)
                try:
                    WebDriverWait(driver, 90, poll_frequency=0.5).until(lambda d, t=text: t in d.find_element("tag name", "body").text)
                except TimeoutException:
                    print(f"{filename}: '{text}' did not appear on {path}; saved what the page shows")
                time.sleep(2)  # let charts and tables finish laying out
                driver.save_screenshot(str(args.out / filename))
                print(f"wrote {args.out / filename}")
        finally:
            driver.quit()
            server.terminate()
            server.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
