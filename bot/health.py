"""/healthz and /metrics over HTTP (off unless MEDIABOT_HTTP_ADDR is set), and `mediabot health`.

The server runs in its own thread and only reads `HealthState`, which a heartbeat task on the event
loop keeps fresh: so a blocked or dead loop shows up as a stale heartbeat (503), not as a hang.
It makes no decisions about feeds or alerts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bot.config import Settings, split_addr
from bot.metrics import CONTENT_TYPE, Metrics

logger = logging.getLogger(__name__)

LOOP_STALE_AFTER = 10.0  # s without a heartbeat: the loop is blocked (a cycle parses off the loop)
STORE_CHECK_EVERY = 15.0  # s between write probes of the store
STORE_STALE_AFTER = 60.0  # s since the last successful write probe


@dataclass
class HealthState:
    """What /healthz reports. Written by the loop's heartbeat, read by the HTTP thread."""

    started: float = field(default_factory=time.monotonic)
    loop_beat: float = field(default_factory=time.monotonic)
    loop_lag: float = 0.0
    scheduler_alive: bool = False
    scheduler_detail: str = "not started"
    store_ok: bool = False
    store_checked: float = 0.0
    store_detail: str = "not checked yet"
    telegram_ok: bool = True
    telegram_detail: str = "not checked yet"

    def report(self, now: float | None = None) -> tuple[bool, dict[str, Any]]:
        """(healthy, JSON body) at monotonic time `now`."""
        now = time.monotonic() if now is None else now
        beat_age = now - self.loop_beat
        loop_ok = beat_age < LOOP_STALE_AFTER
        store_ok = self.store_ok and now - self.store_checked < STORE_STALE_AFTER
        checks = {
            "loop": {"ok": loop_ok, "heartbeat_age_s": round(beat_age, 3), "lag_s": round(self.loop_lag, 3)},
            "scheduler": {"ok": self.scheduler_alive, "detail": self.scheduler_detail},
            "store": {"ok": store_ok, "detail": self.store_detail,
                      "checked_age_s": round(now - self.store_checked, 1) if self.store_checked else None},
            "telegram": {"ok": self.telegram_ok, "detail": self.telegram_detail},
        }
        healthy = loop_ok and self.scheduler_alive and store_ok and self.telegram_ok
        return healthy, {"status": "ok" if healthy else "fail", "uptime_s": round(now - self.started, 1),
                         "checks": checks}


async def heartbeat(state: HealthState, *, scheduler_check: Callable[[], tuple[bool, str]],
                    store_check: Callable[[], bool], outbox_depth: Callable[[], int],
                    metrics: Metrics | None = None, interval: float = 1.0,
                    telegram_check: Callable[[], tuple[bool, str]] | None = None) -> None:
    """Keep `state` fresh until cancelled: loop lag every `interval`, store and outbox less often.
    Telegram counts as unhealthy only when it rejected the token: an outage there is not cured by a restart."""
    loop = asyncio.get_running_loop()
    next_store = 0.0
    probe: asyncio.Future[tuple[bool, str, int | None]] | None = None

    def probe_store() -> tuple[bool, str, int | None]:
        # Off the loop: the probe waits for the store (another process holding its write lock, a long
        # write of the pipeline), and the loop must go on answering commands and sending meanwhile.
        try:
            writable = store_check()
            return writable, "writable" if writable else "not writable (locked by another process, or a "\
                "full or read-only disk)", outbox_depth() if metrics is not None else None
        except Exception as exc:  # a closed or broken store: report, never crash the daemon
            return False, f"error: {type(exc).__name__}: {exc}"[:200], None

    while True:
        expected = loop.time() + interval
        now = time.monotonic()
        ok, detail = scheduler_check()
        state.scheduler_alive, state.scheduler_detail = ok, detail
        if telegram_check is not None:
            state.telegram_ok, state.telegram_detail = telegram_check()
        if probe is not None and probe.done():
            writable, store_detail, depth = probe.result()
            if writable != (state.store_ok or not state.store_checked):  # said once per change
                (logger.info if writable else logger.error)("state store %s", store_detail)
            state.store_ok, state.store_detail = writable, store_detail
            state.store_checked = time.monotonic()
            if metrics is not None and depth is not None:
                metrics.outbox_depth.set(depth)
            probe = None
        elif probe is not None and now - next_store > STORE_STALE_AFTER - STORE_CHECK_EVERY:
            state.store_detail = f"no answer for {now - next_store + STORE_CHECK_EVERY:.0f} s (locked?)"
        if probe is None and now >= next_store:
            next_store = now + STORE_CHECK_EVERY
            probe = asyncio.ensure_future(asyncio.to_thread(probe_store))
        state.loop_beat = time.monotonic()
        await asyncio.sleep(interval)
        state.loop_lag = max(0.0, loop.time() - expected)


class HealthServer:
    """A tiny threaded HTTP server: GET /healthz and GET /metrics, nothing else."""

    def __init__(self, addr: str, state: HealthState, metrics: Metrics) -> None:
        host, port = split_addr(addr)
        self.state = state
        self.metrics = metrics
        outer = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "mediabot"

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    healthy, body = outer.state.report()
                    self._send(200 if healthy else 503, json.dumps(body).encode(), "application/json")
                elif path == "/metrics":
                    self._send(200, outer.metrics.render(), CONTENT_TYPE)
                else:
                    self._send(404, b"not found: try /healthz or /metrics\n", "text/plain")

            def _send(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug("http %s", format % args)

        server_cls = ThreadingHTTPServer
        if ":" in host:  # IPv6 literal
            import socket

            class V6(ThreadingHTTPServer):
                address_family = socket.AF_INET6

            server_cls = V6
        self._server = server_cls((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="mediabot-http", daemon=True)
        self._thread.start()
        logger.info("http listening addr=%s:%d paths=/healthz,/metrics", *self._server.server_address[:2])

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=2)
            self._thread = None
        self._server.server_close()


def probe(settings: Settings, timeout: float = 5.0) -> tuple[bool, str]:
    """`mediabot health`: ask the daemon's /healthz when MEDIABOT_HTTP_ADDR is set; otherwise check
    only that the store opens, has a schema this binary understands, and takes a write. The latter
    says nothing about a running daemon's loop; that needs the HTTP endpoint."""
    if settings.http_addr:
        host, port = split_addr(settings.http_addr)
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return resp.status == 200, resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return False, exc.read().decode("utf-8", "replace")
        except OSError as exc:
            return False, f"{url}: {exc}"
    from bot.errors import StoreError
    from bot.store import SqliteStore

    try:
        # lock=False: the daemon holds the instance lock; this probe only reads and writes a meta row.
        store = SqliteStore(settings.db_path, lock=False)
    except StoreError as exc:
        return False, str(exc)
    try:
        version = store.schema_version()
        if not store.check_writable():
            return False, f"{settings.db_path}: store is not writable"
    finally:
        store.close()
    return True, (f"store ok: {settings.db_path} (schema {version}, writable); set MEDIABOT_HTTP_ADDR "
                  "for loop and scheduler checks")
