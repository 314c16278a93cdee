"""The demo in a real browser: headless Chromium with a fake microphone playing a world sound.

Uses the system Chromium (Debian: ``apt-get install -y chromium chromium-driver``), never a downloaded
browser. Without it the tests are skipped with that instruction as the reason.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import soundfile as sf

from wavbrivl.worlds.shapes.world import render_sound

from .demo_world import build_demo_world, launch_app

CHROMIUM = Path("/usr/bin/chromium")
BASE_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run"]

pytestmark = [pytest.mark.browser, pytest.mark.skipif(
    not CHROMIUM.is_file(),
    reason=f"{CHROMIUM} not found: install the system browser with `apt-get install -y chromium chromium-driver` to run the real-browser demo tests",
)]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, tiny_model):
    world = build_demo_world(tmp_path_factory.mktemp("browser"), tiny_model)
    demo, url = launch_app(world["ckpt"])
    yield url, world
    demo.close()


@pytest.fixture(scope="module")
def playwright():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    with sync_api.sync_playwright() as p:
        yield p


def launch(playwright, *extra: str):
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[*BASE_ARGS, *extra])


def test_record_with_microphone_shows_results_and_generates(playwright, app_url, tmp_path):
    url, world = app_url
    mic = tmp_path / "mic.wav"  # what the fake microphone "hears", looped
    sf.write(mic, render_sound(world["items"][0], 48000, 3.0), 48000, subtype="PCM_16")
    browser = launch(playwright, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                     f"--use-file-for-fake-audio-capture={mic}")
    try:
        page = browser.new_context(permissions=["microphone"], viewport={"width": 1400, "height": 1100}).new_page()
        page.goto(url)
        page.wait_for_selector("#audio-in button.record-button", timeout=60_000)
        page.click("#audio-in button.record-button")
        time.sleep(2.5)
        page.click("#audio-in button.stop-button")
        # Results appear on their own when the recording stops: no button press.
        page.wait_for_function("document.querySelectorAll('#gallery img').length >= 8", timeout=60_000)
        page.wait_for_selector("#labels-out .output-class, #labels-out dl, #labels-out [data-testid='label-output-value']",
                               timeout=30_000)
        assert "from an index of 24 items" in page.inner_text("#search-note")
        assert "%" in page.inner_text("#labels-out")
        captions = page.inner_text("#gallery")
        assert "0." in captions  # scores are shown with the images
        page.click("#generate")
        page.wait_for_selector("#generated img", timeout=60_000)
        shot = tmp_path / "demo-recorded.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        print(f"screenshot: {shot}")
    finally:
        browser.close()


def test_example_click_shows_results(playwright, app_url):
    url, world = app_url
    first = world["items"][0]
    browser = launch(playwright)
    try:
        page = browser.new_page()
        page.goto(url)
        # Without a card, an example is titled by its file name (underscores read as spaces).
        page.get_by_text(f"0 {first.colour} {first.shape}", exact=True).first.click(timeout=60_000)
        page.wait_for_function("document.querySelectorAll('#gallery img').length >= 8", timeout=60_000)
    finally:
        browser.close()


def test_denied_microphone_points_to_help(playwright, app_url):
    url, _ = app_url
    browser = launch(playwright, "--use-fake-device-for-media-stream", "--deny-permission-prompts")
    try:
        page = browser.new_page()  # no microphone permission granted
        page.goto(url)
        page.wait_for_selector("#audio-in button.record-button", timeout=60_000)
        page.click("#audio-in button.record-button")
        page.click("#mic-help")
        page.wait_for_selector("text=set *Microphone* to *Allow*".replace("*", ""), timeout=10_000)
        assert "localhost" in page.inner_text("#mic-help")
        assert page.locator("#gallery img").count() == 0
    finally:
        browser.close()
