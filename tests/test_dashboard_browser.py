"""The dashboard in a real browser: Debian's Chromium driven by Playwright against ``maskwatch serve`` as a user runs it.

Two test cameras (MJPEG over HTTP, steered by the test: see ``tests/mjpeg_camera.py``) show the public-domain sample
portrait shipped with maskwatch, once as is (no mask) and once with a drawn-on mask, in a synthetic scene. The
service runs with a token; the browser logs in, sees both cameras live, sees an event arrive over server-sent events
when the unmasked person steps in (the list is not reloaded), filters the list, opens a snapshot, uploads an image.
Screenshots go to ``$MASKWATCH_TEST_ARTIFACTS`` (or the test's temporary folder), never into the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (pip install playwright)")

from tests.serve_clips import background  # noqa: E402
from tests.serve_support import free_port, wait_for  # noqa: E402

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("MASKWATCH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SAMPLE = Path(__file__).resolve().parents[1] / "src" / "maskwatch" / "assets" / "astronaut.jpg"
TOKEN = "browser-test-token-0123456789"
TIMEOUT_MS = 30_000


def person(masked: bool):
    """The sample portrait (RGB), with a plain cloth mask drawn over nose and mouth when ``masked``."""
    import cv2
    import numpy as np

    image = cv2.cvtColor(cv2.imread(str(SAMPLE)), cv2.COLOR_BGR2RGB)
    if masked:  # the face is at about x 183-271, y 67-176 of the 512x512 portrait
        colour = (170, 200, 230)
        outline = np.array([[186, 118], [226, 110], [268, 118], [262, 168], [226, 190], [192, 168]], np.int32)
        cv2.fillPoly(image, [outline], colour)
        cv2.line(image, (186, 122), (160, 108), colour, 3)
        cv2.line(image, (268, 122), (290, 108), colour, 3)
    return image


def scene(*people: tuple[object, int], height: int = 300):
    """A 640x480 synthetic scene with each (portrait, left x) standing at the bottom edge."""
    import cv2

    out = background()
    for image, x in people:
        resized = cv2.resize(image, (height, height), interpolation=cv2.INTER_AREA)
        out[480 - height :, x : x + height] = resized
    return out


def artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("MASKWATCH_TEST_ARTIFACTS") or tmp_path) / "dashboard"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def cameras_online(port: int) -> bool:
    """Both cameras are online (asked with the token, as an integrator would)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/cameras", headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=1) as response:
            return {c["name"] for c in json.loads(response.read()) if c["status"] == "online"} == {"hall", "door"}
    except OSError:
        return False


@pytest.fixture
def service(tmp_path: Path) -> Iterator[dict]:
    """``maskwatch serve`` with a token and two test cameras: hall (a masked person) and door (empty)."""
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    from tests.mjpeg_camera import MjpegCamera

    unmasked, masked = person(masked=False), person(masked=True)
    hall = MjpegCamera(scene((masked, 10)))
    door = MjpegCamera(scene())
    port = free_port()
    config = tmp_path / "serve.yaml"
    config.write_text(
        "\n".join(
            [
                "node: browser-test",
                "cameras:",
                f"  hall: {{source: '{hall.url}', offline_after_s: 5}}",
                f"  door: {{source: '{door.url}', offline_after_s: 5}}",
                "events: {min_frames: 3, min_score: 0.6, cooldown_s: 0.5}",
                f"store: 'sqlite:///{tmp_path / 'events.db'}'",
                f"snapshots: {{dir: '{tmp_path / 'snapshots'}'}}",
                f"http: {{host: 127.0.0.1, port: {port}, token: '{TOKEN}'}}",
            ]
        )
        + "\n"
    )
    log = tmp_path / "serve.log"
    handle = open(log, "a")
    process = subprocess.Popen(
        [sys.executable, "-m", "maskwatch.cli", "serve", "--config", str(config)],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert wait_for(lambda: cameras_online(port) or process.poll() is not None, 60, 0.25), log.read_text()[-3000:]
        assert process.poll() is None, log.read_text()[-3000:]
        yield {
            "url": f"http://127.0.0.1:{port}",
            "log": log,
            "hall": hall,
            "door": door,
            "enter_hall": lambda: hall.show(scene((masked, 10), (unmasked, 330))),
            "enter_door": lambda: door.show(scene((unmasked, 170))),
        }
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        handle.close()
        hall.close()
        door.close()


def test_dashboard_in_chromium(service: dict, tmp_path: Path):
    expect = sync_api.expect
    expect.set_options(timeout=TIMEOUT_MS)  # expect() has its own default (5 s), apart from the page's
    shots = artifacts(tmp_path)
    list_requests: list[str] = []
    errors: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda error: errors.append(str(error)))
        console: list[str] = []  # console errors: failed loads (favicon too), CSP refusals
        page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
        refused: list[str] = []
        page.on(
            "response", lambda r: refused.append(f"{r.status} {r.url.removeprefix(service['url'])}") if r.status >= 400 else None
        )
        page.on("request", lambda r: list_requests.append(r.url) if "/api/events?" in r.url else None)
        try:
            # not logged in: the page sends the browser to the login page; a wrong token is refused
            page.goto(service["url"] + "/")
            expect(page).to_have_url(service["url"] + "/login")
            page.fill("input[name=token]", "wrong-token-xxxxxxxx")
            page.press("input[name=token]", "Enter")
            expect(page.locator("[role=alert]").first).to_be_visible()
            page.fill("input[name=token]", TOKEN)
            page.press("input[name=token]", "Enter")
            expect(page).to_have_url(service["url"] + "/")

            # both cameras live: status online and a decoded picture in the live view
            for name in ("hall", "door"):
                card = page.locator(f"li.camera[data-camera={name}]")
                expect(card).to_have_attribute("data-status", "online")
                page.wait_for_function(
                    "name => document.querySelector(`li.camera[data-camera=${name}] img.live`)?.naturalWidth > 0",
                    arg=name,
                )
            expect(page.locator("#conn")).to_have_attribute("data-state", "live")
            events = page.locator("#event-list li.event")
            expect(events).to_have_count(0)
            expect(page.locator("#events-summary")).to_have_text("No events yet.")
            loads_before = len(list_requests)

            # a person without a mask steps in: the event arrives over SSE, without the list being reloaded
            service["enter_hall"]()
            hall_event = page.locator("#event-list li.event[data-camera=hall]")
            expect(hall_event).to_have_count(1)
            expect(hall_event).to_have_attribute("data-label", "without_mask")
            assert len(list_requests) == loads_before, "the event came from a reload of the list, not from the live stream"
            expect(hall_event.locator("img.thumb")).to_be_visible()
            service["enter_door"]()
            expect(page.locator("#event-list li.event[data-camera=door]")).to_have_count(1)
            expect(events).to_have_count(2)
            page.wait_for_function("() => [...document.querySelectorAll('img.thumb')].every(i => i.naturalWidth > 0)")
            page.screenshot(path=str(shots / "live.png"), full_page=True)

            # the person leaves the hall: the end event marks the row ended
            service["hall"].show(scene((person(masked=True), 10)))
            expect(hall_event.locator(".event-state")).to_contain_text("ended")

            # filters: by camera, then by a label no event has, then cleared
            page.select_option("#f-camera", "door")
            expect(events).to_have_count(1)
            expect(events.first).to_have_attribute("data-camera", "door")
            page.select_option("#f-camera", "")
            page.select_option("#f-label", "mask_incorrect")
            expect(events).to_have_count(0)
            expect(page.locator("#events-summary")).to_have_text("No events match the filters.")
            page.click("#filters button[type=reset]")
            expect(events).to_have_count(2)
            assert any("camera=door" in url for url in list_requests), list_requests
            assert any("label=mask_incorrect" in url for url in list_requests), list_requests

            # the detail view: the snapshot and the event's fields
            hall_event.locator("button").click()
            dialog = page.locator("dialog#detail")
            expect(dialog).to_be_visible()
            page.wait_for_function("() => document.getElementById('detail-img').naturalWidth > 0")
            expect(page.locator("#detail-box")).to_be_visible()  # the event's box drawn over the snapshot
            expect(page.locator("#detail-fields")).to_contain_text("hall")
            expect(page.locator("#detail-fields")).to_contain_text("without_mask")
            page.screenshot(path=str(shots / "detail.png"))
            page.keyboard.press("Escape")
            expect(dialog).to_be_hidden()

            # the chart is drawn from the hourly counts, redrawn after live events: a point per camera
            for name in ("hall", "door"):
                expect(page.locator(f"#chart-box g.series[data-camera={name}] circle").first).to_be_attached()

            # an image upload: the faces drawn on a canvas and listed; a non-image is refused with the reason
            page.set_input_files("#upload-file", str(SAMPLE))
            expect(page.locator("#upload-canvas")).to_be_visible()
            expect(page.locator("#upload-summary")).to_contain_text("astronaut.jpg")
            expect(page.locator("#upload-faces tbody tr")).to_have_count(1)
            expect(page.locator("#upload-faces tbody")).to_contain_text("no mask")
            page.screenshot(path=str(shots / "upload.png"), full_page=True)
            # up to here nothing failed but the wrong token on the login page
            assert refused == ["401 /api/login"], refused
            assert len(console) == 1 and "401" in console[0], console
            not_image = tmp_path / "notes.jpg"
            not_image.write_text("this is text, not a picture\n")
            page.set_input_files("#upload-file", str(not_image))
            expect(page.locator("#upload-error")).to_contain_text("not an image")

            # a session that ends under the page (401 on its next call) sends the browser to the login page
            page.context.clear_cookies()
            expect(page).to_have_url(service["url"] + "/login")
            page.fill("input[name=token]", TOKEN)
            page.press("input[name=token]", "Enter")
            expect(page).to_have_url(service["url"] + "/")

            # logging out ends the session: the page is gone until the next login
            expect(page.locator("#logout")).to_be_visible()
            page.click("#logout")
            expect(page).to_have_url(service["url"] + "/login")
            page.goto(service["url"] + "/")
            expect(page).to_have_url(service["url"] + "/login")
            assert errors == [], errors
        except Exception:
            page.screenshot(path=str(shots / "failure.png"), full_page=True)
            print(f"screenshots in {shots}; service log tail:\n{service['log'].read_text()[-3000:]}")
            raise
        finally:
            expect.set_options(timeout=5_000)
            browser.close()
