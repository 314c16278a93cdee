"""The demo in a real browser: headless Chromium with a fake microphone playing a world sound.

Uses the system Chromium (Debian: ``apt-get install -y chromium chromium-driver``), never a downloaded
browser. Without it the tests are skipped with that instruction as the reason. The browser's locale
(``ja-JP``, ``en-US``) picks the page's language, as a visitor's browser does.

The README's screenshot (``docs/screenshot.png``) is made here, from the everyday bundle answering one of its
held-out recordings; ``WAVBRIVL_UPDATE_SCREENSHOT=1`` writes it over the committed one (docs/DEPLOY.md).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import httpx
import numpy as np
import pytest
import soundfile as sf

from wavbrivl.worlds.shapes.world import render_sound
from wavbrivl.worlds.shapes.demo_world import build_demo_world

from .demo_world import launch_app, write_card
from .test_docs import SCREENSHOT, SCREENSHOT_WIDTH, check_screenshot

CHROMIUM = Path("/usr/bin/chromium")
EVERYDAY = Path(__file__).resolve().parent.parent / "assets" / "everyday"
#: A recording from a source the everyday bundle never trained on, which it names among its labels.
SCREENSHOT_EXAMPLE = "a sheep bleating"
BASE_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run"]
RESULTS = "document.querySelectorAll('#gallery img').length >= 8"

pytestmark = [pytest.mark.browser, pytest.mark.skipif(
    not CHROMIUM.is_file(),
    reason=f"{CHROMIUM} not found: install the system browser with `apt-get install -y chromium chromium-driver` "
           "to run the real-browser demo tests",
)]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, tiny_model):
    world = build_demo_world(tmp_path_factory.mktemp("browser"), tiny_model)
    write_card(world["ckpt"], world["items"])
    demo, url, service = launch_app(world["ckpt"])
    yield url, world, service
    demo.close()


@pytest.fixture(scope="module")
def playwright():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    with sync_api.sync_playwright() as p:
        yield p


def launch(playwright, *extra: str):
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[*BASE_ARGS, *extra])


@contextmanager
def open_page(playwright, *flags: str, **context: Any) -> Iterator[Any]:
    """A page in a fresh browser started with ``flags``, in a context with ``context`` (locale, viewport ...)."""
    browser = launch(playwright, *flags)
    try:
        yield browser.new_context(**context).new_page()
    finally:
        browser.close()


def failed_files(page) -> list[str]:
    """Collects the URLs of files the page could not load (a deleted recording the player still wanted, say)."""
    failures: list[str] = []
    page.on("response", lambda r: failures.append(r.url) if "/gradio_api/file=" in r.url and r.status >= 400 else None)
    return failures


def test_record_with_microphone_shows_results_and_deletes_the_recording(playwright, app_url, tmp_path):
    url, world, service = app_url
    mic = tmp_path / "mic.wav"  # what the fake microphone "hears", looped
    sf.write(mic, render_sound(world["items"][0], 48000, 3.0), 48000, subtype="PCM_16")
    with open_page(playwright, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                   f"--use-file-for-fake-audio-capture={mic}", permissions=["microphone"],
                   viewport={"width": 1400, "height": 1100}, locale="en-US") as page:
        failures = failed_files(page)
        handled_before = set(service.sounds.handled)
        page.goto(url)
        page.wait_for_selector("#audio-in button.record-button", timeout=60_000)
        page.click("#audio-in button.record-button")
        time.sleep(2.5)
        page.click("#audio-in button.stop-button")
        # Results appear on their own when the recording stops: no button press.
        page.wait_for_function(RESULTS, timeout=60_000)
        page.wait_for_selector("#labels-out .output-class, #labels-out dl, #labels-out [data-testid='label-output-value']",
                               timeout=30_000)
        page.wait_for_selector("#sound-map img", timeout=30_000)  # where the sound landed
        assert "from an index of 24 items" in page.inner_text("#search-note")
        assert "%" in page.inner_text("#labels-out")
        assert "0." in page.inner_text("#gallery")  # scores are shown with the images
        # The recording was deleted from the server once analysed; labels, map and picture used its embedding.
        recorded = [p for p in service.sounds.handled if p not in handled_before]
        assert recorded and not any(os.path.exists(p) for p in recorded)
        page.click("#generate")
        page.wait_for_selector("#generated img", timeout=60_000)
        assert failures == []  # nothing the page showed was deleted under it
        shot = tmp_path / "demo-recorded.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        print(f"screenshot: {shot}")


def test_example_click_shows_results(playwright, app_url):
    url, world, _ = app_url
    with open_page(playwright, locale="en-US") as page:
        failures = failed_files(page)
        page.goto(url)
        # Each example says what it is (the card's title) and whether its kind was heard in training.
        first = world["items"][0]
        page.get_by_text(f"✓ example 0: a {first.colour} {first.shape}", exact=True).click(timeout=60_000)
        page.wait_for_function(RESULTS, timeout=60_000)
        assert page.get_by_text("✗ example 1:", exact=False).count() == 1
        assert failures == []


def test_denied_microphone_points_to_help(playwright, app_url):
    url, _, _ = app_url
    # No microphone permission granted.
    with open_page(playwright, "--use-fake-device-for-media-stream", "--deny-permission-prompts", locale="en-US") as page:
        page.goto(url)
        page.wait_for_selector("#audio-in button.record-button", timeout=60_000)
        page.click("#audio-in button.record-button")
        page.click("#mic-help")
        page.wait_for_selector("text=set *Microphone* to *Allow*".replace("*", ""), timeout=10_000)
        assert "localhost" in page.inner_text("#mic-help")
        assert page.locator("#gallery img").count() == 0


@pytest.mark.parametrize("locale, expected, unexpected", [
    ("ja-JP", ["WavBriVL：モデルには何が聞こえる？", "小さなテストの世界", "あなたの音（30秒まで）", "録音は保存しません",
               "例の音", "✗ 例 1：", "近い画像", "絵を生成する", "マイクが使えないときは", "準備ができました", "スコア",
               "あなたの音の位置"],
     ["Your sound", "Generate picture", "Tiny test world", "Ready:"]),
    ("en-US", ["WavBriVL: what does the model hear?", "Tiny test world", "Your sound (up to 30 s)",
               "Your recordings are not kept", "Example sounds", "Nearest pictures", "Generate picture",
               "Microphone not working?", "Ready:", "score"],
     ["あなたの音", "小さなテストの世界"]),
])
def test_the_page_speaks_the_browsers_language(playwright, app_url, tmp_path, locale, expected, unexpected):
    """Labels, buttons, help, notes, the bundle's name and examples (gr.I18n), the status line, the results'
    notes and error messages (handlers: the request's Accept-Language) all in the browser's language."""
    url, world, _ = app_url
    with open_page(playwright, locale=locale, viewport={"width": 1400, "height": 1100}) as page:
        page.goto(url)
        page.wait_for_function("(document.querySelector('#model-info')?.innerText || '').includes('✅')", timeout=60_000)
        # An error a handler raises (a silent upload) comes in the page's language.
        quiet = tmp_path / "quiet.wav"
        sf.write(quiet, np.zeros(16000, np.float32), 16000, subtype="PCM_16")
        page.click("#audio-in button[aria-label='Upload file']")
        page.locator("#audio-in input[type=file]").set_input_files(str(quiet))
        toast = page.wait_for_selector(".toast-body", timeout=30_000)
        assert ("無音です" if locale == "ja-JP" else "The sound is silent") in toast.inner_text()
        page.click("#about")
        page.locator("#examples button").nth(1).click()
        page.wait_for_function(RESULTS, timeout=60_000)
        body = page.inner_text("body")
        assert all(s in body for s in expected), [s for s in expected if s not in body]
        assert not any(s in body for s in unexpected), [s for s in unexpected if s in body]
        assert ("件のインデックスから" if locale == "ja-JP" else "from an index of") in page.inner_text("#search-note")
        about = "小さなテストの世界の音です。" if locale == "ja-JP" else "Sounds of a tiny test world."
        assert about in page.inner_text("#about")


def test_on_a_phone_the_recorder_and_the_examples_come_first(playwright, app_url):
    url, _, _ = app_url
    with open_page(playwright, locale="en-US", viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True) as page:
        page.goto(url)
        page.wait_for_selector("#examples button", timeout=60_000)
        recorder, examples = page.locator("#audio-in").bounding_box(), page.locator("#examples").bounding_box()
        gallery, about = page.locator("#gallery").bounding_box(), page.locator("#about").bounding_box()
        assert recorder["y"] + recorder["height"] < 844  # the whole recorder on the first screen
        assert examples["y"] < 844 < gallery["y"]  # the examples start on it, the results come after
        assert recorder["y"] < examples["y"] < gallery["y"] < about["y"]


def test_no_server_path_in_what_the_page_serves(playwright, app_url):
    """Neither the bundle's folder, nor the checkout, nor the temp folder appear in the page's configuration or
    in any text it shows, after a search included."""
    url, world, _ = app_url
    secrets = {str(world["ckpt"]), str(world["root"]), str(Path(__file__).resolve().parent.parent),
               tempfile.gettempdir().rstrip("/") + "/"}
    config = httpx.get(url + "config", timeout=30).text
    assert [s for s in secrets if s in config] == []
    with open_page(playwright, locale="en-US") as page:
        page.goto(url)
        assert [s for s in secrets if s in page.content()] == []
        page.locator("#examples button").first.click()
        page.wait_for_function(RESULTS, timeout=60_000)
        page.click("#about")
        page.click("#mic-help")
        time.sleep(1)
        body = page.inner_text("body")
        assert [s for s in secrets if s in body] == []


@pytest.fixture(scope="module")
def everyday_url():
    demo, url, _ = launch_app(EVERYDAY)
    yield url
    demo.close()


def test_screenshot_of_the_everyday_page_answering_a_held_out_recording(playwright, everyday_url, tmp_path):
    """The page as a visitor sees it after clicking a held-out example: pictures, labels, map and a painting."""
    with open_page(playwright, locale="en-US", viewport={"width": SCREENSHOT_WIDTH, "height": 900}) as page:
        failures = failed_files(page)
        page.goto(everyday_url)
        page.wait_for_function("(document.querySelector('#model-info')?.innerText || '').includes('✅')", timeout=120_000)
        page.locator("#examples button", has_text=SCREENSHOT_EXAMPLE).click()
        page.wait_for_function(RESULTS, timeout=60_000)
        page.wait_for_selector("#sound-map img", timeout=30_000)
        page.wait_for_function(f"(document.querySelector('#labels-out')?.innerText || '').includes('{SCREENSHOT_EXAMPLE}')",
                               timeout=30_000)
        labels = page.inner_text("#labels-out")
        assert labels.index(SCREENSHOT_EXAMPLE) < labels.index("%")  # named first, as the README's caption says
        page.click("#generate")
        page.wait_for_selector("#generated img", timeout=60_000)
        # Toasts are transient: they cover the map for a few seconds whenever they come.
        page.add_style_tag(content=".toast-wrap { display: none !important; }")
        page.evaluate("document.activeElement && document.activeElement.blur()")
        assert failures == []
        raw = tmp_path / "page.png"
        page.screenshot(path=str(raw), full_page=True)
    small = compact_screenshot(raw, tmp_path / "screenshot.png")
    check_screenshot(small)
    if os.environ.get("WAVBRIVL_UPDATE_SCREENSHOT") == "1":
        shutil.copy(small, SCREENSHOT)
    print(f"screenshot: {small} ({small.stat().st_size // 1024} KB)")


def compact_screenshot(raw: Path, out: Path) -> Path:
    """A full-page screenshot small enough for the README: 256 colours (flat interface colours survive), optimised."""
    from PIL import Image

    with Image.open(raw) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(out, optimize=True)
    return out
