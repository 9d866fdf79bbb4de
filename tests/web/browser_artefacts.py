"""The browser tests' screenshots: test artefacts, and the README's images on request."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Screenshots the tests take: test artefacts (not committed); with
# HOSPITAL_DOCS_SCREENSHOTS=1 the README's images under docs/ are rewritten too.
ARTEFACTS = Path(os.environ.get("HOSPITAL_TEST_ARTEFACTS", ROOT / "test-artefacts"))


def screenshot(driver, name: str, docs: str | None = None, height: int | None = None) -> Path:
    """Save a screenshot as a test artefact (and as docs/<docs> when asked for)."""
    if height is None:  # the whole page
        height = min(8000, driver.execute_script("return document.body.scrollHeight") + 20)
    driver.set_window_size(1400, height)
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    assert driver.save_screenshot(str(path)), path
    if docs and os.environ.get("HOSPITAL_DOCS_SCREENSHOTS") == "1":
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copyfile(path, ROOT / "docs" / docs)
    return path
