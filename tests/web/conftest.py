"""Browser fixtures: Debian's chromium driven through chromium-driver by selenium, headless,
with a fresh profile and nothing that reaches the network (scripts/test installs both)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ROOT = Path(__file__).resolve().parents[2]
# Screenshots the tests take: test artefacts (not committed); with
# HOSPITAL_DOCS_SCREENSHOTS=1 the README's images under docs/ are rewritten too.
ARTEFACTS = Path(os.environ.get("HOSPITAL_TEST_ARTEFACTS", ROOT / "test-artefacts"))
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000")


@pytest.fixture
def browser(tmp_path):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromium-driver are missing: scripts/test installs them")
        pytest.skip("chromium and chromium-driver are not installed (scripts/test installs them)")
    os.environ.setdefault("SE_OFFLINE", "true")     # selenium manager: never download
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver, name: str, docs: str | None = None, height: int | None = None) -> Path:
    """Save a screenshot as a test artefact (and as docs/<docs> when asked for)."""
    if height:
        driver.set_window_size(1400, height)
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    assert driver.save_screenshot(str(path)), path
    if docs and os.environ.get("HOSPITAL_DOCS_SCREENSHOTS") == "1":
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copyfile(path, ROOT / "docs" / docs)
    return path
