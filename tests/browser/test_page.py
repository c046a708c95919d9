"""The search page in a real headless Chromium against the live service (uvicorn) over an index the
pipeline code built (tests.search_service.test_app's library: video 1 = six frames, video 2 = two)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from resources.embedding.encoder import FrameEncoder
from resources.vector_index import IndexBusyError, VectorIndex
from resources.vector_index.schema import IndexSchema
from search_service.app import create_app
from search_service.config import ServiceSettings
from tests.search_service.test_app import SCHEMA, library  # noqa: F401 - the module-scoped index fixture
from tests.servers import free_port, running_uvicorn, wait_http_ok

pytestmark = pytest.mark.slow


def serve(library: dict, encoder: FrameEncoder, **settings) -> Iterator[str]:  # noqa: F811
    app = create_app(
        ServiceSettings(checkpoint_dir=str(library["store"]), **settings), encoder=encoder,
        open_index=lambda dim: VectorIndex.open(SCHEMA, path=library["root"] / "qdrant", lock_timeout_s=10),
    )
    with running_uvicorn(app) as base:
        yield base


@pytest.fixture  # one per test: the embedded shard has one owner, and some tests start their own server
def server(library: dict, tiny_encoder: FrameEncoder) -> Iterator[str]:  # noqa: F811
    yield from serve(library, tiny_encoder)


def wait(browser, condition, timeout: float = 30):  # noqa: ANN001, ANN201 - selenium objects
    return WebDriverWait(browser, timeout, poll_frequency=0.05).until(condition)


def js(browser, script: str, *args):  # noqa: ANN001, ANN201
    return browser.execute_script(script, *args)


def open_page(browser, base: str) -> None:  # noqa: ANN001
    browser.get(f"{base}/")
    # Generous: the first page of a fresh Chromium on 2 busy cores took over 30 s once in CI.
    wait(browser, lambda b: b.find_element(By.ID, "model").text != "model…", timeout=120)


def search(browser, text: str | None = None) -> list[str]:  # noqa: ANN001
    """Runs a search from the form (text or whatever query image is set); the shown image ids."""
    if text is not None:
        box = browser.find_element(By.ID, "query")
        box.clear()
        box.send_keys(text)
    browser.find_element(By.ID, "go").click()
    return shown(browser)


def shown(browser) -> list[str]:  # noqa: ANN001
    wait(browser, lambda b: b.find_element(By.ID, "results").get_attribute("data-paint-ms") is not None)
    return js(browser, "return [...document.querySelectorAll('#results .hit')].map(h => h.dataset.imageId)")


def thumbnails_loaded(browser, count: int) -> bool:  # noqa: ANN001
    return js(browser, "return [...document.querySelectorAll('#results .hit img')].slice(0, arguments[0])"
                       ".every(i => i.complete && i.naturalWidth > 0)", count)


def test_text_query_shows_thumbnails_with_boxes(browser, server: str) -> None:  # noqa: ANN001
    open_page(browser, server)
    assert "random weights" in browser.find_element(By.ID, "model").text  # the tiny test model says so
    assert "meaningless" in browser.find_element(By.ID, "banner").text
    assert browser.find_element(By.ID, "indexinfo").text == "8 frames"
    ids = search(browser, "a red circle")
    assert len(ids) == 8  # the whole library (top_k 24)
    paint_ms = int(browser.find_element(By.ID, "results").get_attribute("data-paint-ms"))
    assert paint_ms < 300, f"results painted {paint_ms} ms after the response"
    boxes = browser.find_elements(By.CSS_SELECTOR, "#results .hit .thumb .box")
    assert len(boxes) == 8 and all(b.size["width"] > 0 and b.size["height"] > 0 for b in boxes)  # rerank is on: every hit has its patch
    wait(browser, lambda b: thumbnails_loaded(b, 4))
    assert "text + patch rerank" in browser.find_element(By.ID, "status").text
    # Scores on hover; the full frame with its timestamp on click.
    first = browser.find_element(By.CSS_SELECTOR, "#results .hit")
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(browser).move_to_element(first).perform()
    scores = first.find_element(By.CLASS_NAME, "scores")
    assert scores.is_displayed() and "global" in scores.text and "patch" in scores.text and "fused" in scores.text
    first.find_element(By.CSS_SELECTOR, ".thumb").click()
    wait(browser, lambda b: js(b, "const i = document.getElementById('full'); return document.getElementById('viewer').open && i.naturalWidth > 0"))
    assert js(browser, "return document.getElementById('full').naturalWidth") == (584 if ids[0] == "2:0" else 448)  # full size
    caption = browser.find_element(By.ID, "fullcaption").text
    assert ids[0] in caption and " at 0:0" in caption
    browser.find_element(By.ID, "fullclose").click()


def test_rerank_off_draws_no_boxes_and_alpha_follows(browser, server: str) -> None:  # noqa: ANN001
    open_page(browser, server)
    browser.find_element(By.ID, "rerank").click()
    assert not browser.find_element(By.ID, "alpha").is_enabled()
    search(browser, "a blue square")
    assert browser.find_elements(By.CSS_SELECTOR, "#results .box") == []


def test_upload_by_picker_drop_and_paste(browser, server: str, library: dict, tmp_path: Path) -> None:  # noqa: ANN001, F811
    """The query is frame 1:0's corner: with patch rerank at alpha 0.2, 1:0 ranks first (globally
    the blown-up corner, 2:0, would)."""
    from selenium.webdriver.common.keys import Keys

    query = tmp_path / "corner.png"
    query.write_bytes(library["query"])
    open_page(browser, server)
    browser.find_element(By.ID, "alpha").send_keys(Keys.LEFT * 6)  # 0.5 (the default) -> 0.2 in steps of 0.05
    assert browser.find_element(By.ID, "alphaout").text == "0.20"
    browser.find_element(By.ID, "file").send_keys(str(query))
    ids = shown(browser)
    assert ids[0] == "1:0" and "image + patch rerank" in browser.find_element(By.ID, "status").text
    assert browser.find_element(By.ID, "querylabel").text == "corner.png"
    # Drop and paste carry a File the way the browser hands it over.
    make_file = "const bytes = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));" \
                "const dt = new DataTransfer(); dt.items.add(new File([bytes], 'dropped.png', {type: 'image/png'}));"
    import base64

    data = base64.b64encode(library["query"]).decode()
    for event in ("new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true})",
                  "new ClipboardEvent('paste', {clipboardData: dt, bubbles: true, cancelable: true})"):
        js(browser, "document.getElementById('results').removeAttribute('data-paint-ms');")
        js(browser, make_file + f"document.dispatchEvent({event});", data)
        assert shown(browser)[0] == "1:0"
        assert browser.find_element(By.ID, "querylabel").text == "dropped.png"


def test_more_like_this(browser, server: str) -> None:  # noqa: ANN001
    open_page(browser, server)
    first = search(browser, "a green triangle")[0]
    browser.find_element(By.CSS_SELECTOR, "#results .hit .like").click()
    wait(browser, lambda b: b.find_element(By.ID, "querylabel").text == f"like {first}")
    ids = shown(browser)
    assert ids and first not in ids and browser.find_element(By.ID, "query").get_attribute("value") == ""
    assert search(browser, "a green triangle") and "hybrid" in browser.find_element(By.ID, "status").text  # frame + text
    browser.find_element(By.ID, "clearimage").click()
    search(browser)
    assert "text" in browser.find_element(By.ID, "status").text


def test_filters_narrow_the_results(browser, server: str) -> None:  # noqa: ANN001
    open_page(browser, server)
    everything = search(browser, "a yellow star")
    browser.find_element(By.CSS_SELECTOR, "#filters summary").click()
    browser.find_element(By.ID, "videos").send_keys("1")
    browser.find_element(By.ID, "tmin").send_keys("0.5")
    narrowed = search(browser)
    assert narrowed and len(narrowed) < len(everything)
    assert sorted(narrowed) == ["1:2", "1:3", "1:4", "1:5"]  # video 1 at 4 fps: frames from 500 ms on
    browser.find_element(By.ID, "fmin").send_keys("9")
    assert search(browser) == []
    assert "No frames match these filters" in browser.find_element(By.CSS_SELECTOR, "#results .empty").text


def test_moments_view_with_a_timeline(browser, server: str) -> None:  # noqa: ANN001
    open_page(browser, server)
    browser.find_element(By.ID, "viewmoments").click()
    gap = browser.find_element(By.ID, "gap")
    gap.clear()
    gap.send_keys("0.3")
    browser.find_element(By.ID, "query").send_keys("a white hexagon")
    browser.find_element(By.ID, "go").click()
    wait(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#moments .moment")) == 2)
    headings = sorted(h.text for h in browser.find_elements(By.CSS_SELECTOR, "#moments .moment h3"))
    assert headings[0].startswith("Video 1 · 0:00.000 – 0:01.250") and "6 frames" in headings[0]
    assert headings[1].startswith("Video 2 · 0:00.000 – 0:00.250") and "2 frames" in headings[1]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#moments .timeline .tick")) == 8
    assert len(browser.find_elements(By.CSS_SELECTOR, "#moments .timeline .tick.best")) == 2
    assert browser.find_element(By.ID, "results").is_displayed() is False
    tick = browser.find_elements(By.CSS_SELECTOR, "#moments .timeline .tick")[1]
    title = tick.get_attribute("title")  # "<image id> at <time> · <score>"
    tick.click()  # a frame on the timeline opens in the viewer, with its time
    wait(browser, lambda b: b.find_element(By.ID, "viewer").is_displayed())
    assert browser.find_element(By.ID, "fullcaption").text.startswith(title.split(" at ")[0])
    assert " at " + title.split(" at ")[1].split(" · ")[0] in browser.find_element(By.ID, "fullcaption").text


def test_api_key_is_asked_once_then_kept_for_the_tab(browser, library: dict, tiny_encoder: FrameEncoder) -> None:  # noqa: ANN001, F811
    for base in serve(library, tiny_encoder, api_key="s3cret"):
        open_page(browser, base)
        browser.find_element(By.ID, "query").send_keys("a red circle")
        browser.find_element(By.ID, "go").click()
        wait(browser, lambda b: b.find_element(By.ID, "keydialog").is_displayed())
        browser.find_element(By.ID, "apikey").send_keys("wrong")
        browser.find_element(By.ID, "keysave").click()
        wait(browser, lambda b: "refused" in b.find_element(By.ID, "keyerror").text)
        key = browser.find_element(By.ID, "apikey")
        key.clear()
        key.send_keys("s3cret")
        browser.find_element(By.ID, "keysave").click()
        assert len(shown(browser)) == 8
        wait(browser, lambda b: thumbnails_loaded(b, 4))  # thumbnails go through the key too
        browser.refresh()  # same tab: no second prompt
        wait(browser, lambda b: b.find_element(By.ID, "model").text != "model…")
        assert len(search(browser, "a red circle")) == 8
        assert not browser.find_element(By.ID, "keydialog").is_displayed()


def test_an_empty_index_shows_an_empty_state_and_the_offline_model_is_named(
    browser, tmp_path: Path, world_model_dir: Path, monkeypatch: pytest.MonkeyPatch  # noqa: ANN001
) -> None:
    """A fresh offline install: weights that are not on this machine, so the service falls back to
    the offline synthetic-world model (a stand-in here), over an index nothing was written to."""
    monkeypatch.setenv("OPENCLIP_MODEL", "ViT-B-32")
    monkeypatch.setenv("OPENCLIP_PRETRAINED", str(tmp_path / "absent.safetensors"))
    monkeypatch.setenv("OPENCLIP_PRECISION", "fp32")
    settings = ServiceSettings(checkpoint_dir=str(tmp_path / "checkpoints"), offline_model_dir=str(world_model_dir))
    app = create_app(settings, open_index=lambda dim: VectorIndex.open(IndexSchema("frames_empty", dim), path=tmp_path / "qdrant"))
    with running_uvicorn(app) as base:
        open_page(browser, base)
        assert browser.find_element(By.ID, "model").text == "offline demo model"
        assert "knows only the 36 captions" in browser.find_element(By.ID, "banner").text
        wait(browser, lambda b: b.find_element(By.ID, "indexinfo").text == "index empty")
        assert "The index is empty" in browser.find_element(By.CSS_SELECTOR, "#results .empty").text
        assert search(browser, "anything") == []
        assert "The index is empty" in browser.find_element(By.CSS_SELECTOR, "#results .empty").text
        assert "error" not in browser.find_element(By.ID, "status").get_attribute("class")


def test_docs_page_lists_and_calls_the_api(browser, server: str) -> None:  # noqa: ANN001
    # One entry per operation the deployment's document lists (no DAGSTER_URL here: no ingest routes).
    operations = sum(len(item) for item in httpx.get(f"{server}/openapi.json").json()["paths"].values())
    browser.get(f"{server}/docs")
    wait(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "details.op")) == operations >= 7)
    op = browser.find_element(By.ID, "post-/search/text")
    op.find_element(By.TAG_NAME, "summary").click()
    assert "rerank_alpha" in op.text and "group_by" in op.text
    op.find_element(By.TAG_NAME, "button").click()
    wait(browser, lambda b: op.find_element(By.CSS_SELECTOR, "pre.out").text.startswith("200"))
    assert '"query_type": "text"' in op.find_element(By.CSS_SELECTOR, "pre.out").text
    # Nothing on the pages comes from another origin.
    assert js(browser, "return performance.getEntriesByType('resource').every(e => e.name.startsWith(location.origin))")


def test_a_busy_index_is_said_and_the_page_recovers_when_it_opens(browser, library: dict, tiny_encoder: FrameEncoder) -> None:  # noqa: ANN001, F811
    """The shard is held elsewhere (a pipeline run) when the service starts: the page says so and
    that searches must wait, then shows the index once the service has it."""
    released = threading.Event()

    def open_index(dim: int) -> VectorIndex:
        if not released.is_set():
            raise IndexBusyError("the embedded index is open in another process (a pipeline run)")
        return VectorIndex.open(SCHEMA, path=library["root"] / "qdrant", lock_timeout_s=10)

    app = create_app(ServiceSettings(checkpoint_dir=str(library["store"])), encoder=tiny_encoder, open_index=open_index)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=(port := free_port()), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{base}/", alive=thread.is_alive)  # the page is up; /healthz answers 503
        open_page(browser, base)
        assert browser.find_element(By.ID, "indexinfo").text == "index busy"
        assert "another process" in browser.find_element(By.ID, "banner").text
        browser.find_element(By.ID, "query").send_keys("a red circle")
        browser.find_element(By.ID, "go").click()
        wait(browser, lambda b: "Search failed (503)" in b.find_element(By.ID, "status").text)
        released.set()
        wait(browser, lambda b: b.find_element(By.ID, "indexinfo").text == "8 frames")  # the page polls /healthz
        assert "another process" not in browser.find_element(By.ID, "banner").text
        assert len(search(browser)) == 8
    finally:
        server.should_exit = True
        thread.join(10)
