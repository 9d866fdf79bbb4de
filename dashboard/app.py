"""The dashboard's web application (FastAPI): the page and its static files, served from the
package; the live feed as server-sent events; the state as JSON; /metrics for Prometheus.

It only reads the projection. A page opened late gets the whole picture in its first event,
then every change; the event id carries how many points of the time series it has, so a
client that reconnects (`Last-Event-ID`) gets only the points it missed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from fastapi.staticfiles import StaticFiles

from dashboard.metrics import CONTENT_TYPE, registry_for, render
from dashboard.projection import Projection

STATIC = resources.files("dashboard") / "static"


def plotly_js() -> Path:
    """plotly.js as the plotly package ships it: the charts need no network."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def series_offset(last_event_id: str | None) -> int:
    """How many time-series points a reconnecting client already has (id "version:points")."""
    try:
        return max(0, int((last_event_id or "").rpartition(":")[2]))
    except ValueError:
        return 0


def create_app(
    projection: Projection,
    *,
    interval_s: float = 0.5,
    should_stop: Callable[[], bool] = lambda: False,
) -> FastAPI:
    """The application for one projection. `interval_s`: at most one event that often;
    `should_stop`: when it says so, the live feeds end (the server is shutting down)."""
    app = page_app("hospital dashboard", "index.html", projection)
    registry = registry_for(projection)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(render(registry), media_type=CONTENT_TYPE)

    fhir = getattr(projection, "fhir", None)
    if fhir is not None:  # the run as FHIR resources, read-only (dashboard.fhir)
        from dashboard.fhir import add_routes

        add_routes(app, fhir)

    add_feed(app, projection, interval_s, should_stop)
    return app


def create_region_app(
    view: Any,
    *,
    interval_s: float = 0.5,
    should_stop: Callable[[], bool] = lambda: False,
) -> FastAPI:
    """The region's page (`dashboard.region.RegionView`): its hospitals as tiles, the
    transfers on the road, the region's KPIs; the same feed and state as the hospital's."""
    app = page_app("hospital region dashboard", "region.html", view)
    add_feed(app, view, interval_s, should_stop)
    return app


def page_app(title: str, page: str, projection: Any) -> FastAPI:
    """An application serving `page` at /, the static files and plotly.js from the package,
    and the projection's snapshot at /api/state."""
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse((STATIC / page).read_text(encoding="utf-8"))

    @app.get("/vendor/plotly.min.js")
    def vendor_plotly() -> FileResponse:
        return FileResponse(
            plotly_js(), media_type="text/javascript", headers={"Cache-Control": "max-age=86400"}
        )

    @app.get("/api/state")
    def state() -> JSONResponse:
        return JSONResponse(projection.snapshot())

    return app


def add_feed(
    app: FastAPI, projection: Any, interval_s: float, should_stop: Callable[[], bool]
) -> None:
    """`/events`: the projection's snapshots as server-sent events, one when it has changed
    (at most every `interval_s`), a keep-alive comment when it has not for 15 s. Any
    projection with `version`, `generation` and `snapshot(series_from=...)` (whose snapshot
    has `version` and `series`) will do: the hospital's, the region's."""

    @app.get("/events", response_class=EventSourceResponse)
    async def events(request: Request) -> AsyncIterator[ServerSentEvent]:
        sent_points = series_offset(request.headers.get("last-event-id"))
        version = -1
        generation = projection.generation
        quiet = 0.0
        while not await request.is_disconnected():
            if should_stop():
                return
            if projection.generation != generation:  # a new run: start the series over
                generation, sent_points = projection.generation, 0
            if projection.version != version:
                snap = projection.snapshot(series_from=sent_points)
                version = snap["version"]
                sent_points += len(snap["series"])
                yield ServerSentEvent(
                    raw_data=json.dumps(snap, separators=(",", ":")),
                    event="state",
                    id=f"{version}:{sent_points}",
                    retry=1000,
                )
                quiet = 0.0
            elif quiet >= 15:
                yield ServerSentEvent(comment="keep-alive")
                quiet = 0.0
            await asyncio.sleep(interval_s)
            quiet += interval_s
