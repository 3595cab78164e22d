"""The reference web app in a real headless Chromium, against make dev's pieces: the provider sandboxes
(consent pages that ask), the local stack and the web app on its own origin, all on free loopback ports.

The browser is Debian's chromium (the Makefile installs it), driven by Playwright over the DevTools
protocol; Playwright's own browser download is never used.
"""

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from local.dev import user_token, web_app_parameters
from local.provider_apps import allow_plain_http_oauth, register_provider_apps, sandbox_parameters
from local.sandboxes.fleet import SandboxFleet
from local.stack import LocalStack
from local.web_app import WebAppServer

CHROMIUM = Path(os.environ.get("PAYEDGE_CHROMIUM", "/usr/bin/chromium"))
# Flags that work as root in a container: no sandbox, no GPU, nothing fetched in the background.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(os.environ.get("PAYEDGE_SCREENSHOTS", Path(__file__).resolve().parents[2] / ".screenshots"))


@dataclass(frozen=True)
class Running:
    stack: LocalStack
    fleet: SandboxFleet
    web_app: WebAppServer


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    allow_plain_http_oauth()
    with SandboxFleet() as fleet:
        web_app = WebAppServer(issue_token=lambda: user_token(stack, "biz-browser"))
        web_app.bind()
        try:
            with LocalStack(
                parameters={"LogLevel": "ERROR", **sandbox_parameters(fleet), **web_app_parameters(web_app)}
            ) as stack:
                register_provider_apps(stack, fleet)
                web_app.api_url = stack.api_url
                web_app.start()
                yield Running(stack, fleet, web_app)
        finally:
            web_app.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get install chromium)")
    with sync_playwright() as playwright:
        # launch() gives every run a fresh, temporary profile (--user-data-dir) and --headless.
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def screenshots() -> Path:
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    return SCREENSHOTS


@pytest.fixture(scope="module")
def page(browser: Browser, screenshots: Path) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(20_000)
    opened = context.new_page()
    console: list[str] = []
    opened.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    opened.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
    try:
        yield opened
    finally:
        # What the browser said and showed last: the first things to read when a step fails.
        (screenshots / "browser-console.log").write_text("\n".join(console) + "\n", encoding="utf-8")
        opened.screenshot(path=screenshots / "last-page.png", full_page=True)
        context.close()
