"""What the tests of the dashboard's followers (of a decisions file, a run's database, a
region's schemas) share: waiting for the page to show something, and what it said."""

from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dashboard.metrics import registry_for, render
from dashboard.projection import Projection

POLL_S = 0.05


def wait_for(condition, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"the follower did not show {what} in {timeout_s:g} s")
        time.sleep(POLL_S)


def skipped_metric(projection: Projection) -> float:
    """`hospital_dashboard_rows_skipped_total`, as /metrics gives it."""
    text = render(registry_for(projection)).decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }["hospital_dashboard_rows_skipped_total"]


def dashboard_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "hospital.dashboard"]
