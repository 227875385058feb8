"""The daemon: APScheduler ticks polls, the delivery worker drains the outbox, python-telegram-bot
answers commands, all on one asyncio loop. SIGTERM/SIGINT stop it cleanly; SIGHUP reloads the YAML."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import logging
import signal
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.config import Config, Settings, Watchlist, config_signature, load_config, place_of, save_good_copy
from bot.deliver import payload_of
from bot.errors import ConfigError, StoreError, TokenRejectedError

if TYPE_CHECKING:
    from bot.app import Runtime
    from bot.metrics import Metrics

logger = logging.getLogger(__name__)

SHUTDOWN_GRACE = 8.0  # seconds; the whole stop must fit in 10 s
ABANDONED: list[float] = []  # when a stop cancelled a running cycle (the command line then does not wait for it)


async def run_daemon(settings: Settings, config: Config, early_signals: Sequence[int] = (), *,
                     rejected: Sequence[str] = (), signature: dict[str, tuple[int, int, str]] | None = None) -> int:
    """Run until SIGTERM/SIGINT (also one that came during start-up: `early_signals`, read once this
    function's handlers are in place). Returns the exit code: 0, or 2 when the health address cannot be
    listened on or Telegram rejects the token (configuration an operator must fix). `rejected`: the YAML's
    problems when `config` is the last good copy served in its place; `signature`: the files as read."""
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from bot.app import build_runtime
    from bot.health import HealthServer, HealthState, heartbeat
    from bot.metrics import Metrics
    from bot.pipeline import run_cycle

    rt = build_runtime(settings, config)
    signature = signature if signature is not None else await asyncio.to_thread(config_signature,
                                                                              settings.watchlists_dir)
    await asyncio.to_thread(config_served, rt, settings, rejected, signature)
    gc.freeze()  # the dedup index rebuilt at start lives long: keep it out of every later full collection
    metrics = Metrics()
    _instrument(rt, metrics)
    metrics.failing_at_start(f.id for f in config.feeds if f.enabled and rt.store.feed_state(f.id, f.url).failures)
    stop = asyncio.Event()
    exit_code = 0
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if early_signals:  # a stop that came while the runtime was built
        logger.info("stop requested during start-up")
        stop.set()

    reloads: set[asyncio.Task[list[str]]] = set()

    def hangup() -> None:  # systemd's ExecReload, `kill -HUP`: re-read the YAML now (it used to kill us)
        logger.info("SIGHUP: reloading the config")
        task = asyncio.ensure_future(reload_config(rt, settings))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, hangup)
    current: dict[str, asyncio.Future[None]] = {}
    last_tick = [time.monotonic()]
    cycle_started = [0.0]

    async def cycle() -> None:  # one at a time: tick() starts it only when the last one is done
        started = time.monotonic()
        try:
            report = await run_cycle(rt.ctx)
        except asyncio.CancelledError:
            logger.warning("poll cycle cancelled by shutdown; its feeds are polled again next start")
            return
        except Exception:
            metrics.on_cycle(time.monotonic() - started, ok=False)
            logger.exception("poll cycle crashed")
            return
        metrics.on_cycle(time.monotonic() - started, ok=True)
        if report.queued:
            rt.deliverer.wake()

    async def tick() -> None:
        # Returns at once: the cycle runs as its own task, so ticks keep coming during a long cycle (the
        # health check sees the scheduler alive; APScheduler has no skipped runs to warn about)
        last_tick[0] = time.monotonic()
        running = current.get("cycle")
        if stop.is_set() or (running is not None and not running.done()):
            return
        gone = rt.store.file_gone()
        if gone is not None and rt.extras.get("store_gone") is not None:
            # Deleted or replaced under us, at two ticks in a row: what this process records is lost, and the
            # lock it holds is on a directory nobody sees, so a second instance may already run on the path
            # and send the same alerts. Stop (exit 4); a restart opens whatever is at the path now.
            nonlocal exit_code
            logger.error("state store: %s; stopping (exit 4)", gone)
            exit_code = 4
            stop.set()
            return
        rt.extras["store_gone"] = gone
        problem = gone or rt.store.file_problem()  # said once per change, not once per tick
        if problem != rt.extras.get("file_problem"):
            rt.extras["file_problem"] = problem
            if problem is not None:
                logger.error("state store: %s", problem)
        if gone is not None:
            return  # no cycle into a file nobody will open again; the next tick looks once more
        cycle_started[0] = time.monotonic()
        current["cycle"] = asyncio.ensure_future(cycle())

    async def prune() -> None:
        await prune_store(rt, settings, datetime.now(UTC))

    async def reload_if_changed() -> None:
        await _reload_if_changed(rt, settings)

    app = None
    server: HealthServer | None = None
    beat: asyncio.Task[None] | None = None
    delivery: asyncio.Task[None] | None = None
    telegram: asyncio.Task[bool] | None = None
    scheduler = AsyncIOScheduler(timezone="UTC")
    tick_every = max(1.0, min(settings.poll_min_interval, settings.poll_interval) / 2)

    def scheduler_check() -> tuple[bool, str]:
        if not scheduler.running:
            return False, "scheduler stopped"
        age = time.monotonic() - last_tick[0]
        if age > tick_every * 3 + 30:
            return False, f"no poll tick for {age:.0f} s (expected every {tick_every:g} s)"
        running = current.get("cycle")
        busy = running is not None and not running.done()
        during = f" (cycle running for {time.monotonic() - cycle_started[0]:.0f} s)" if busy else ""
        return True, f"last poll tick {age:.0f} s ago{during}"

    def telegram_check() -> tuple[bool, str]:
        if not settings.token:
            return True, "off (alerts go to the terminal)"
        if rt.deliverer.token_rejected:
            return False, "the bot token was rejected; alerts stay queued"
        if telegram is not None and telegram.done() and not telegram.cancelled() and telegram.exception() is None:
            failing = rt.deliverer.unreachable
            if failing is not None:  # still ok: an outage at Telegram is not ours to restart for, but say it
                since, why = failing
                return True, f"sends failing since {since:%H:%M:%S} UTC ({why[:120]}); messages wait and go out later"
            return True, "connected"
        return True, "connecting (alerts queue meanwhile)"  # an outage there is not ours to restart for

    def telegram_started(task: asyncio.Task[bool]) -> None:
        nonlocal exit_code
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        if isinstance(exc, TokenRejectedError):
            logger.error("%s; stopping (exit 2)", exc)
        else:
            logger.error("telegram could not be started; stopping (exit 2): %s: %s", type(exc).__name__, exc)
        exit_code = 2
        stop.set()

    try:
        if settings.http_addr:
            # Listen before any work starts: a port in use is one line and exit 2, not a crash mid-cycle
            try:
                server = HealthServer(settings.http_addr, HealthState(), metrics)
            except (OSError, OverflowError, ValueError) as exc:
                logger.error("cannot listen on MEDIABOT_HTTP_ADDR=%s: %s", settings.http_addr,
                             getattr(exc, "strerror", None) or exc)
                return 2
        if settings.token:
            from bot.commands import make_application, start_application

            app = make_application(rt)
            telegram = asyncio.create_task(start_application(app, stop), name="telegram-start")
            telegram.add_done_callback(telegram_started)
        scheduler.add_job(tick, "interval", seconds=tick_every, next_run_time=datetime.now(UTC),
                          max_instances=1, coalesce=True, id="poll")
        scheduler.add_job(prune, "interval", hours=6, next_run_time=datetime.now(UTC) + timedelta(minutes=1),
                          id="prune")
        rt.extras["config_files"] = signature  # as read (before build_runtime: an edit saved since is a change)
        scheduler.add_job(reload_if_changed, "interval", seconds=2, id="reload")
        scheduler.start()
        delivery = asyncio.create_task(rt.deliverer.run(), name="delivery")
        if server is not None:
            beat = asyncio.create_task(heartbeat(server.state, scheduler_check=scheduler_check,
                                                 store_check=rt.store.check_writable,
                                                 outbox_depth=rt.store.pending_count, metrics=metrics,
                                                 telegram_check=telegram_check),
                                       name="heartbeat")
            server.start()
        logger.info("mediabot running feeds=%d watchlists=%d telegram=%s http=%s", len(config.feeds),
                    len(config.watchlists), "on" if settings.token else "off (terminal)",
                    settings.http_addr or "off")
        await stop.wait()
    finally:
        # Stop taking work, let in-flight sends settle (or leave them pending), close the store.
        # Every row is committed on its own, so whatever is cut off here is resent after a restart.
        logger.info("stopping")
        # `stop` is set, so ticks return at once; a cycle already running gets a short grace first
        # (the scheduler's shutdown would cancel it right away).
        running = current.get("cycle")
        if running is not None and not running.done():
            done, _ = await asyncio.wait([running], timeout=SHUTDOWN_GRACE / 4)
            if not done:
                running.cancel()
                ABANDONED.append(time.monotonic())  # its parse or match may go on in a worker thread
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await running
        if scheduler.running:
            scheduler.shutdown(wait=False)
        if server is not None:
            server.stop()
        if beat is not None:
            beat.cancel()
        rt.deliverer.stop()
        if delivery is not None:
            try:
                await asyncio.wait_for(delivery, timeout=SHUTDOWN_GRACE / 2)
            except TimeoutError:
                logger.warning("delivery did not settle in time; unsent rows stay pending")
        if telegram is not None and not telegram.done():
            telegram.cancel()  # still trying to reach Telegram
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await telegram
        if app is not None:
            from bot.commands import stop_application

            try:
                await asyncio.wait_for(stop_application(app), timeout=SHUTDOWN_GRACE / 4)
            except TimeoutError:
                logger.warning("telegram application did not stop in time")
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGHUP)
        await rt.aclose()
        logger.info("stopped")
    return exit_code


async def prune_store(rt: Runtime, settings: Settings, now: datetime) -> None:
    """Housekeeping (the daemon every 6 hours, `poll --once` after each run), on the store's writer thread:
    the first prune after a long stop takes seconds, which on the event loop stalled commands and sends."""
    started = time.monotonic()
    try:
        counts = await rt.ctx.in_store(rt.store.prune, now, settings.retention_days)
    except StoreError as exc:  # housekeeping never fails a poll: tried again next time
        logger.warning("prune failed: %s", exc)
        return
    except Exception:
        logger.exception("prune failed")
        return
    logger.log(logging.INFO if any(counts.values()) else logging.DEBUG, "pruned %s elapsed_ms=%d",
               " ".join(f"{k}={v}" for k, v in counts.items()), (time.monotonic() - started) * 1000)


def _instrument(rt: Runtime, metrics: Metrics) -> None:
    """Plug the metrics hooks into the pipeline (on_feed) and the deliverer (on_sent, stats); the
    daemon's runtime has no other hooks."""
    rt.ctx.on_feed = metrics.on_feed
    rt.deliverer.on_sent = metrics.on_sent
    rt.extras["metrics"] = metrics  # a reload tells it which feeds are still in force
    metrics.watch_delivery(rt.deliverer.stats)


async def _reload_if_changed(rt: Runtime, settings: Settings) -> None:
    """Reload once the YAML changed and then held still for one look (every 2 s): a file being uploaded or
    written in chunks is often valid YAML halfway, and went live half-finished. The reading and the
    matcher's index are built off the event loop (a big watchlist stalled commands for seconds)."""
    current = await asyncio.to_thread(config_signature, settings.watchlists_dir)
    loaded = rt.extras.setdefault("config_files", current)
    if current == loaded:
        rt.extras.pop("config_settling", None)
        return
    if rt.extras.get("config_settling") != current:  # still changing: look again next time
        rt.extras["config_settling"] = current
        return
    rt.extras.pop("config_settling", None)
    await reload_config(rt, settings)


def _reload_lock(rt: Runtime) -> asyncio.Lock:
    """One reload at a time (SIGHUP, /reload, the file watch): read in threads, an older read finishing
    last would put the older files in force, and the watch would then see nothing left to reload."""
    lock: asyncio.Lock = rt.extras.setdefault("reload_lock", asyncio.Lock())
    return lock


@dataclass
class _Prepared:
    """A reload read and built off the event loop: the config and its matcher, or the YAML's problems; the
    new config's lint warnings (logged), and those the edit brought (told to the admins)."""

    config: Config | None
    matcher: Any = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    brought: list[str] = field(default_factory=list)


def _prepare(settings: Settings, signature: dict[str, tuple[int, int, str]], in_force: Config,
             in_force_warnings: list[str] | None) -> _Prepared:
    """Read and validate the YAML (whose config_signature, taken before, is `signature`), build its matcher
    and lint it (tens of milliseconds each: not on the event loop). `in_force_warnings`: the lint of the
    config in force when a reload made it (None at the first reload: linted here)."""
    try:
        config = load_config(settings.watchlists_dir)
    except ConfigError as exc:
        return _Prepared(None, problems=exc.problems)
    except Exception as exc:  # a loader bug must not take the running bot down: keep the good config
        logger.exception("config reload failed")
        return _Prepared(None, problems=[f"{settings.watchlists_dir}: the files could not be read "
                                         f"({type(exc).__name__}: {exc}); this is a mediabot bug, please report "
                                         "it with the log"])
    _keep_good_copy(settings, signature)
    from bot.match import Matcher, lint_watchlists

    warnings = lint_watchlists(config.watchlists)
    before = in_force_warnings if in_force_warnings is not None else lint_watchlists(in_force.watchlists)
    return _Prepared(config, Matcher(config.watchlists), [], warnings, _new_warnings(warnings, before))


def _apply(rt: Runtime, settings: Settings, prepared: _Prepared) -> list[str]:
    """Swap a prepared config in, or keep the last good one and tell the admins why."""
    config, problems = prepared.config, prepared.problems
    now = datetime.now(UTC)
    if config is None:
        logger.error("config reload rejected, keeping the last good config: %s", "; ".join(problems))
        _tell_admins_rejected(rt, settings, problems, now)
        rt.deliverer.wake()
        rt.extras["config_rejected"] = True
        return problems
    if rt.extras.pop("config_rejected", False):  # the admins' last word from the bot was the rejection
        _tell_admins_accepted(rt, settings, config, now)
        rt.deliverer.wake()
    let_in = settings.let_in
    gone = [(w, rt.store.subscribers(w.id, let_in=let_in)) for w in rt.config.watchlists
            if w.id not in config.watchlist_names()]
    back = [(w, rt.store.subscribers(w.id, let_in=let_in)) for w in config.watchlists
            if w.id not in rt.config.watchlist_names()]
    rt.swap_config(config, prepared.matcher)
    rt.extras["warnings"] = prepared.warnings
    logger.info("config reloaded feeds=%d watchlists=%d", len(config.feeds), len(config.watchlists))
    if (metrics := rt.extras.get("metrics")) is not None:
        metrics.feeds_in_force(f.id for f in config.feeds if f.enabled)
    for warning in prepared.warnings:
        logger.warning("%s", warning)
    # A slip YAML takes without a word (a list without commas, no rules: for a veto group) loads cleanly and
    # changes what alerts: the admins hear of the warnings the edit brought, as they hear of errors.
    if brought := prepared.brought:
        more = f"\n(and {len(brought) - 20} more)" if len(brought) > 20 else ""
        rt.store.queue_notice(sorted(settings.admins), "Config reloaded; the edit is in force, with warnings "
                              "(`mediabot check` shows them):\n" + "\n".join(brought[:20]) + more, now)
        rt.deliverer.wake()
    orphaned = [(w, chats) for w, chats in gone if chats or w.chats]
    if orphaned:  # a file renamed or deleted: its chats would silently get nothing more
        lines = [f"{w.id} ({w.name}): {len(set(chats) | set(w.chats))} chats" for w, chats in orphaned]
        logger.warning("watchlists gone from the config while chats still follow them: %s", "; ".join(lines))
        rt.store.queue_notice(sorted(settings.admins), "Watchlists gone from the config (file renamed or deleted?); "
                              "the chats that follow them get nothing from them until they are back (their "
                              "subscribers are told):\n" + "\n".join(lines), now)
    # The journalists are told too: a list that falls silent without a word looks like a quiet news day.
    told = _tell_subscribers(rt, gone, "list_gone", now) + _tell_subscribers(rt, back, "list_back", now)
    if orphaned or told:
        rt.deliverer.wake()
    return []


def _new_warnings(now: Sequence[str], before: Sequence[str]) -> list[str]:
    """The warnings an edit brought: compared by file name and text, not by line (a line added above an old
    warning moves it) nor by directory (a config served from the kept good copy was read from elsewhere)."""
    def what(warning: str) -> tuple[str, str]:
        path, _line = place_of(warning)
        return Path(path).name, warning.partition(": warning: ")[2]

    left = Counter(what(w) for w in before)
    out = []
    for warning in now:
        if left[what(warning)] > 0:
            left[what(warning)] -= 1
        else:
            out.append(warning)
    return out


def _drop_alerts_config_withdrew(rt: Runtime, old: Config, new: Config) -> None:
    """Alerts still waiting (Telegram down, a mute, quiet hours, a digest) of a list the admins removed or
    paused, or for a chat they took out of a list's chats:, are dropped as /unsubscribe drops a chat's:
    they went out on /unmute or when Telegram was back, after the admins had withdrawn them. An alert that
    also came through another list the chat still gets stays."""
    live = {w.id: w for w in new.watchlists if w.enabled}
    withdrawn = {w.id for w in old.watchlists if w.id not in live}
    removed_chats = {w.id: set(w.chats) - set(live[w.id].chats) for w in old.watchlists if w.id in live}
    touched = withdrawn | {w for w, chats in removed_chats.items() if chats}
    if not touched:
        return
    subscribed: dict[int, set[str]] = {}

    def still_gets(chat: int, payload: dict[str, Any], watchlist: str) -> bool:
        subs = subscribed.setdefault(chat, rt.store.subscriptions(chat))
        lists = [str(w) for w in payload.get("lists") or [watchlist]]
        return any(w in live and (w in subs or chat in live[w].chats) for w in lists)

    drop = [row.id for row in rt.store.waiting_alerts(touched)
            if not still_gets(row.chat_id, payload_of(row), row.watchlist)]
    for row in rt.store.waiting_digests():  # a digest waiting loses the withdrawn lists' stories
        body = payload_of(row)
        entries = [e for e in body.get("entries") or [] if isinstance(e, dict)]
        keep = [e for e in entries if still_gets(row.chat_id, e, str(e.get("watchlist") or ""))]
        if len(keep) == len(entries):
            continue
        if not keep:
            drop.append(row.id)
            continue
        total = body.get("total")
        total = total - (len(entries) - len(keep)) if isinstance(total, int) else len(keep)
        rt.store.rewrite_payload(row.id, dict(body, entries=keep, total=max(total, len(keep))))
    if drop:
        rt.store.drop_alerts(drop, "config changed")
        logger.info("alerts of withdrawn watchlists or chats dropped count=%d lists=%s", len(drop),
                    ",".join(sorted(touched)))


def _tell_subscribers(rt: Runtime, lists: list[tuple[Watchlist, list[int]]], text: str, now: datetime) -> int:
    """A notice to each subscriber of these lists, in the chat's language; returns how many."""
    from bot.alerts import labels

    sent = 0
    for w, chats in lists:
        for chat_id in chats:
            row = rt.store.chat(chat_id)
            lang = str(row["language"]) if row else rt.settings.language
            rt.store.queue_notice([chat_id], labels(lang)[text].format(name=w.name, id=w.id), now)
            sent += 1
    if sent:
        logger.info("told %d subscriber chats: %s %s", sent, text, ", ".join(w.id for w, chats in lists if chats))
    return sent


_REJECTED_MARK = "config-rejected"  # in the state directory: the problems the admins were last told of


def config_served(rt: Runtime, settings: Settings, problems: Sequence[str],
                  signature: dict[str, tuple[int, int, str]]) -> None:
    """At the start of `run` and `poll --once`: with `problems`, the YAML was broken and the last good copy
    is served; the admins are told once per set of problems (a cron job must not repeat it every run).
    Without, the config in force (read as `signature`) is kept as the good copy, and admins told of a
    rejection hear it is fixed."""
    mark = settings.state_dir / _REJECTED_MARK
    now = datetime.now(UTC)
    if problems:
        digest = hashlib.sha1("\n".join(problems).encode()).hexdigest()
        logger.error("config rejected, serving the last good config: %s", "; ".join(problems))
        rt.extras["config_rejected"] = True  # the daemon's next good reload says it is accepted
        with contextlib.suppress(OSError):
            if mark.read_text(encoding="utf-8") == digest:
                return
        _tell_admins_rejected(rt, settings, problems, now)
        with contextlib.suppress(OSError):
            mark.write_text(digest, encoding="utf-8")
        return
    if mark.exists():
        _tell_admins_accepted(rt, settings, rt.config, now)
    _keep_good_copy(settings, signature)


def _tell_admins_rejected(rt: Runtime, settings: Settings, problems: Sequence[str], now: datetime) -> None:
    rt.store.queue_notice(sorted(settings.admins), "Config rejected; the last good config stays in force until "
                          "it is fixed:\n" + "\n".join(problems[:20]), now)


def _tell_admins_accepted(rt: Runtime, settings: Settings, config: Config, now: datetime) -> None:
    rt.store.queue_notice(sorted(settings.admins), f"Config accepted: the edited files are in force "
                          f"({len(config.feeds)} feeds, {len(config.watchlists)} watchlists).", now)


def _keep_good_copy(settings: Settings, signature: dict[str, tuple[int, int, str]]) -> None:
    """The YAML just loaded cleanly: keep it for a later start that finds a broken edit (save_good_copy)."""
    try:
        save_good_copy(settings.watchlists_dir, settings.state_dir, signature)
        (settings.state_dir / _REJECTED_MARK).unlink(missing_ok=True)
    except OSError as exc:
        logger.warning("could not keep a copy of the good config in %s: %s", settings.state_dir, exc)


async def reload_config(rt: Runtime, settings: Settings) -> list[str]:
    """Re-read the YAML now (/reload, SIGHUP); swap it in when valid, keep the last good one otherwise.
    Read and built off the event loop, like a reload on a change. Returns the problems."""
    async with _reload_lock(rt):
        signature = rt.extras["config_files"] = await asyncio.to_thread(config_signature, settings.watchlists_dir)
        old = rt.config
        prepared = await asyncio.to_thread(_prepare, settings, signature, old, rt.extras.get("warnings"))
        problems = _apply(rt, settings, prepared)
        if rt.config is not old:
            # On the store's writer thread, after any write of a cycle that matched under the old config
            # (later writes check the new one: pipeline._write).
            await rt.ctx.in_store(_drop_alerts_config_withdrew, rt, old, rt.config)
        return problems
