"""An aiohttp app served from its own thread and event loop, for tests whose client side is
synchronous (schemathesis)."""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web

from tests.support.stack import free_port


class ThreadedServer:
    def __init__(self, app: web.Application, host: str = "127.0.0.1") -> None:
        self.app = app
        self.host = host
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner = web.AppRunner(app)
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> str:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.runner.setup(), self.loop).result(30)
        site = web.TCPSite(self.runner, self.host, self.port)
        asyncio.run_coroutine_threadsafe(site.start(), self.loop).result(30)
        return self.url

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
