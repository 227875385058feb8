"""The daemon: APScheduler ticks polls, the delivery worker drains the outbox, python-telegram-bot
answers commands, all on one asyncio loop. SIGTERM/SIGINT stop it cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from datetime import UTC, datetime, timedelta

from bot.config import Config, Settings, load_config
from bot.errors import ConfigError

logger = logging.getLogger(__name__)

SHUTDOWN_GRACE = 8.0  # seconds; the whole stop must fit in 10 s


async def run_daemon(settings: Settings, config: Config) -> int:
    """Run until SIGTERM/SIGINT. Returns the exit code."""
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from bot.app import build_runtime
    from bot.pipeline import run_cycle

    rt = build_runtime(settings, config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    cycle_lock = asyncio.Lock()

    async def tick() -> None:
        if cycle_lock.locked() or stop.is_set():
            return
        async with cycle_lock:
            try:
                report = await run_cycle(rt.ctx)
            except Exception:
                logger.exception("poll cycle crashed")
                return
            if report.queued:
                rt.deliverer.wake()

    async def prune() -> None:
        counts = rt.store.prune(datetime.now(UTC), settings.retention_days)
        logger.info("pruned %s", " ".join(f"{k}={v}" for k, v in counts.items()))

    async def reload_if_changed() -> None:
        await _reload_if_changed(rt, settings)

    app = None
    if settings.token:
        from bot.commands import build_application

        app = await build_application(rt)
    scheduler = AsyncIOScheduler(timezone="UTC")
    tick_every = max(1.0, min(settings.poll_min_interval, settings.poll_interval) / 2)
    scheduler.add_job(tick, "interval", seconds=tick_every, next_run_time=datetime.now(UTC),
                      max_instances=1, coalesce=True, id="poll")
    scheduler.add_job(prune, "interval", hours=6, next_run_time=datetime.now(UTC) + timedelta(minutes=1),
                      id="prune")
    scheduler.add_job(reload_if_changed, "interval", seconds=3, id="reload")
    scheduler.start()
    delivery = asyncio.create_task(rt.deliverer.run(), name="delivery")
    logger.info("mediabot running feeds=%d watchlists=%d telegram=%s", len(config.feeds),
                len(config.watchlists), "on" if settings.token else "off (terminal)")
    try:
        await stop.wait()
    finally:
        logger.info("stopping")
        scheduler.shutdown(wait=False)
        rt.deliverer.stop()
        try:
            await asyncio.wait_for(delivery, timeout=SHUTDOWN_GRACE / 2)
        except TimeoutError:
            logger.warning("delivery did not settle in time; unsent rows stay pending")
            delivery.cancel()
        if app is not None:
            from bot.commands import stop_application

            await stop_application(app)
        await rt.aclose()
        logger.info("stopped")
    return 0


def _mtimes(settings: Settings) -> dict[str, float]:
    out = {}
    for p in sorted(settings.watchlists_dir.glob("*.y*ml")):
        with contextlib.suppress(OSError):
            out[p.name] = p.stat().st_mtime
    return out


async def _reload_if_changed(rt: object, settings: Settings) -> None:
    from bot.app import Runtime

    assert isinstance(rt, Runtime)
    current = _mtimes(settings)
    previous = rt.extras.setdefault("mtimes", current)
    if current == previous:
        return
    rt.extras["mtimes"] = current
    reload_config(rt, settings)


def reload_config(rt: object, settings: Settings) -> list[str]:
    """Re-read the YAML; swap it in when valid, keep the last good one otherwise. Returns problems."""
    from bot.app import Runtime

    assert isinstance(rt, Runtime)
    try:
        config = load_config(settings.watchlists_dir)
    except ConfigError as exc:
        logger.error("config reload rejected, keeping the last good config: %s", "; ".join(exc.problems))
        text = "Config reload rejected; the last good config stays in force:\n" + "\n".join(exc.problems[:20])
        rt.store.queue_notice(sorted(settings.admins), text, datetime.now(UTC))
        rt.deliverer.wake()
        return exc.problems
    rt.swap_config(config)
    logger.info("config reloaded feeds=%d watchlists=%d", len(config.feeds), len(config.watchlists))
    return []
