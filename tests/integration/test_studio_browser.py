"""Studio in headless Chromium: the Teachable-Machine loop a person would click through."""

from __future__ import annotations

import re
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lensflow.studio.app import StudioConfig, create_app
from tests.fixtures.browser import CHROMIUM_ARGS, PageCheck, chromium_path

pytestmark = [pytest.mark.slow, pytest.mark.browser]
CATEGORIES = ["pants", "shoes"]
TRAIN_PHOTOS = 15  # per category, from ../shared/datasets/clothing-small/train


@pytest.fixture
def studio_url(tmp_path: Path) -> Iterator[str]:
    """A real Studio (uvicorn in a thread, job worker on) on a free loopback port."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(StudioConfig(data_dir=tmp_path / "studio", port=port))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "Studio did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def camera_browser(browser) -> Iterator:
    """Chromium with its fake camera (a moving test pattern) and camera permission granted."""
    b = browser.browser_type.launch(
        executable_path=chromium_path(),
        headless=True,
        args=[
            *CHROMIUM_ARGS,
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
        ],
    )
    yield b
    b.close()


@pytest.fixture
def open_camera_page(camera_browser) -> Iterator:
    """Like the shared `open_page`, in the fake-camera browser."""
    contexts = []

    def _open(url: str) -> PageCheck:
        ctx = camera_browser.new_context(permissions=["camera"], accept_downloads=True)
        contexts.append(ctx)
        page = ctx.new_page()
        check = PageCheck(page)
        page.on(
            "console", lambda m: check.console_errors.append(m.text) if m.type == "error" else None
        )
        page.on("pageerror", lambda e: check.console_errors.append(str(e)))
        page.on("requestfailed", lambda r: check.failed_requests.append(r.url))
        page.goto(url)
        return check

    yield _open
    for ctx in contexts:
        ctx.close()


def test_create_upload_train_test_download(
    studio_url: str, open_camera_page, shared_datasets: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    clothing = shared_datasets / "clothing-small"
    check = open_camera_page(studio_url + "/")
    page = check.page
    page.fill("#model-name", "clothes")
    page.fill("#model-categories", ", ".join(CATEGORIES))
    page.click("#create-model button[type=submit]")
    page.wait_for_url(re.compile(r"/models/\w+$"))

    for label in CATEGORIES:
        photos = sorted((clothing / "train" / label).glob("*.jpg"))[:TRAIN_PHOTOS]
        zone = page.locator(f'.dropzone[data-category="{label}"]')
        zone.locator("input[type=file]").set_input_files([str(p) for p in photos])
        expect(page.locator("#upload-result")).to_contain_text(f"{TRAIN_PHOTOS} accepted")
        expect(page.locator(f'.dropzone[data-category="{label}"] .count')).to_have_text(
            f"{TRAIN_PHOTOS} photos"
        )

    page.click("#train")
    badge = page.locator("#model-title .badge")
    expect(badge).to_have_text(re.compile("^(ready|error)$"), timeout=150_000)
    assert badge.inner_text() == "ready", page.locator("#model-error").inner_text()
    expect(page.locator("#accuracy")).to_be_visible()
    expect(page.locator("#confusion tr")).to_have_count(len(CATEGORIES) + 1)

    # A held-back photo of each category (validation/, never uploaded) is recognised.
    for label in CATEGORIES:
        photo = sorted((clothing / "validation" / label).glob("*.jpg"))[0]
        page.set_input_files("#test-file", str(photo))
        expect(page.locator("#prediction")).to_have_text(re.compile(rf"^{label} \("))
        expect(page.locator("#test-result .bar-row")).to_have_count(len(CATEGORIES))

    # Live test: webcam frames are classified continuously, top-3 bars (here 2 classes).
    page.click("#test-webcam")
    page.wait_for_function("document.querySelector('#webcam').videoWidth > 0")
    page.locator("#prediction").evaluate("e => e.remove()")
    expect(page.locator("#prediction")).to_have_text(
        re.compile(r"^(pants|shoes|not one of your categories) \(")
    )
    expect(page.locator("#test-result .bar-row")).to_have_count(len(CATEGORIES))
    page.click("#test-webcam")  # stop

    with page.expect_download() as download:
        page.click("#download")
    saved = tmp_path / "bundle.zip"
    download.value.save_as(saved)
    with zipfile.ZipFile(saved) as zf:
        names = set(zf.namelist())
    assert {"bundle/model.onnx", "bundle/labels.txt", "bundle/card.json"} <= names
    assert check.console_errors == []
    # A download ends its navigation with ERR_ABORTED: Playwright lists it as a failed request.
    assert [u for u in check.failed_requests if not u.endswith("/bundle")] == []
    assert check.broken_images() == []


def test_webcam_hold_to_record(studio_url: str, open_camera_page) -> None:
    """Chromium's fake camera: holding the button stores a frame about every 200 ms."""
    from playwright.sync_api import expect

    check = open_camera_page(studio_url + "/")
    page = check.page
    model = page.request.post(
        studio_url + "/api/models", data={"name": "cam", "categories": ["left", "right"]}
    ).json()
    page.goto(f"{studio_url}/models/{model['id']}")
    page.click("#webcam-start")
    page.wait_for_function("document.querySelector('#webcam').videoWidth > 0")
    page.locator('.dropzone[data-category="left"] .record').hover()
    page.mouse.down()
    page.wait_for_timeout(1500)
    page.mouse.up()
    expect(page.locator("#upload-result")).to_contain_text("frames kept for left")
    page.wait_for_timeout(500)  # the last frame's upload
    counts = page.request.get(f"{studio_url}/api/models/{model['id']}").json()["categories"]
    assert counts[0]["name"] == "left" and 4 <= counts[0]["count"] <= 10, counts
    assert counts[1]["count"] == 0
    assert check.console_errors == []
