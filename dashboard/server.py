"""The dashboard's web server: uvicorn on a thread beside the run, bound to 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI

from dashboard.app import create_app
from dashboard.projection import Projection


class DashboardServer:
    """Serves one projection at http://HOST:PORT/ until `stop`, with the application
    `create` makes for it (the hospital's page; `create_region_app`: the region's). Port 0:
    a free one."""

    def __init__(
        self,
        projection: Projection | Any,  # a hospital's, or a region's (RegionView)
        host: str = "127.0.0.1",
        port: int = 0,
        interval_s: float = 0.5,
        create: Callable[..., FastAPI] = create_app,
    ):
        self.projection = projection
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((host, port))
        self.host, self.port = self.socket.getsockname()[:2]
        self.app = create(projection, interval_s=interval_s, should_stop=self._stopping)
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=2,
            access_log=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._serve, name="dashboard", daemon=True)

    def _stopping(self) -> bool:
        return self.server.should_exit

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def _serve(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.socket]))

    def start(self, timeout_s: float = 10.0) -> DashboardServer:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the dashboard did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout_s)
        self.socket.close()

    def __enter__(self) -> DashboardServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
