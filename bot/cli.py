"""Command line: run | poll --once | check | match | demo | backtest. Exit codes:
0 done (even if some feeds failed), 1 usage or bad input, 2 invalid configuration,
3 the state directory is in use by another instance, 4 the store cannot be used, 141 the reader of the
output went away (`mediabot check | head -1`), as for any tool stopped by SIGPIPE.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, NoReturn

from bot import __version__
from bot.config import Config, Settings, config_signature, load_config, load_good_copy, load_settings, mask_secret
from bot.errors import ConfigError, StoreError, StoreLockedError, TokenRejectedError
from bot.log import setup_logging

EXIT_OK, EXIT_USAGE, EXIT_CONFIG, EXIT_LOCKED, EXIT_STORE = 0, 1, 2, 3, 4
EXIT_PIPE = 141
MAX_RECORD_CHARS = 1_000_000  # one `mediabot match` input line


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mediabot` console script and `python -m bot`."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    handler = {
        "run": _cmd_run, "poll": _cmd_poll, "check": _cmd_check, "match": _cmd_match,
        "demo": _cmd_demo, "backtest": _cmd_backtest, "health": _cmd_health,
    }[args.command]
    if args.command in ("run", "poll"):
        _catch_early_signals()
    try:
        return int(handler(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader closed the pipe: nothing is wrong with mediabot, so no traceback. Point stdout at
        # /dev/null so the interpreter's final flush does not fail a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE


EARLY_SIGNALS: list[int] = []  # SIGTERM/SIGINT that came before `run` or `poll` had its own handlers


def _catch_early_signals() -> None:
    """Remember a stop that comes while the config loads and the store opens. As PID 1 in a container a
    signal without a handler is dropped, so `docker stop` in the first second waited out its timeout (and
    elsewhere a SIGHUP then killed the daemon). The command's own handlers look at EARLY_SIGNALS."""
    def early(signum: int, _frame: object) -> None:
        EARLY_SIGNALS.append(signum)

    signal.signal(signal.SIGTERM, early)
    signal.signal(signal.SIGINT, early)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the config being loaded is already the newest


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on a mistyped command line; here 2 means a configuration to fix (cron alerts key on
    it), so usage errors exit 1 as documented."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="mediabot",
                                description="Media-monitoring alert bot: feeds -> watchlists -> Telegram.")
    p.add_argument("--version", action="version", version=f"mediabot {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("run", help="the daemon: scheduler + Telegram bot + delivery")
    poll = sub.add_parser("poll", help="poll feeds and deliver alerts")
    poll.add_argument("--once", action="store_true", required=True, help="one cycle plus delivery, then exit")
    sub.add_parser("check", help="validate the configuration (exit 2 on errors)")
    m = sub.add_parser("match", help="match JSON Lines items from stdin or --items against the watchlists")
    m.add_argument("--items", type=Path, help="JSON Lines file (default: stdin)")
    m.add_argument("--explain", action="store_true",
                   help="also say, per watchlist some term hit, which words each group took and why each rule "
                        "held or not (a veto, a missing group, a headline or near: condition)")
    sub.add_parser("demo", help="run the real pipeline on bundled sample feeds; no network, no token")
    b = sub.add_parser("backtest", help="run an (edited) watchlist over stored items and show the difference")
    b.add_argument("watchlist", type=Path, help="path to a watchlist YAML file")
    b.add_argument("--since", default="7d", help="how far back (e.g. 24h, 7d; default 7d)")
    b.add_argument("--words", action="store_true",
                   help="also list the words each fuzzy term takes in those items without being spelled so")
    sub.add_parser("health", help="container health check: /healthz when MEDIABOT_HTTP_ADDR is set, else the store")
    return p


def _load(stream: IO[str] = sys.stderr) -> tuple[Settings, Config] | int:
    loaded = _load_serving(stream, fallback=False)
    return loaded if isinstance(loaded, int) else (loaded.settings, loaded.config)


@dataclass(frozen=True)
class _Loaded:
    settings: Settings
    config: Config
    problems: list[str]  # the YAML's, when `config` is the last good copy served in its place
    signature: dict[str, tuple[int, int, str]]  # the files as they were read (config_signature)


def _load_serving(stream: IO[str] = sys.stderr, *, fallback: bool = True) -> _Loaded | int:
    """Settings and config. With `fallback` (poll, run), YAML with errors is reported and the last good
    config saved in the state directory is served instead, as a running daemon keeps its own: one typo must
    not stop every alert of a cron job, nor keep a restarted daemon down."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=stream)
        return EXIT_CONFIG
    setup_logging(settings.log_level, [settings.token or ""])
    signature = config_signature(settings.watchlists_dir)  # before reading: an edit meanwhile is a change
    try:
        config = load_config(settings.watchlists_dir)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=stream)
        good = load_good_copy(settings.state_dir) if fallback else None
        if good is None:
            print(f"{len(exc.problems)} problem(s); nothing was changed.", file=stream)
            return EXIT_CONFIG
        print(f"{len(exc.problems)} problem(s); serving the last good config (saved {good[1]}) until they are fixed.",
              file=stream)
        return _Loaded(settings, good[0], exc.problems, signature)
    return _Loaded(settings, config, [], signature)


# --------------------------------------------------------------------------- check


def _cmd_check(args: argparse.Namespace) -> int:
    loaded = _load(sys.stdout)
    if isinstance(loaded, int):
        return loaded
    settings, config = loaded
    problem = state_dir_problem(settings.state_dir)
    if problem is not None:  # `run` would stop at once with exit 4: say so before it is deployed
        print(f"environment: MEDIABOT_STATE_DIR: {problem}")
        return EXIT_CONFIG
    enabled = [f for f in config.feeds if f.enabled]
    print(f"OK: {len(config.feeds)} feeds ({len(enabled)} enabled), {len(config.watchlists)} watchlists "
          f"in {settings.watchlists_dir}")
    from bot.match import lint_watchlists  # local, like the other heavy imports of the CLI

    for warning in lint_watchlists(config.watchlists):
        print(warning)
    for wl in config.watchlists:
        terms = sum(len(t) for t in wl.groups.values())
        chats = f", {len(wl.chats)} fixed chats" if wl.chats else ""
        print(f"  {wl.id}: {len(wl.groups)} groups, {terms} terms, {len(wl.rules)} rules, "
              f"{len(wl.exclude)} exclusions{chats} — {wl.description}")
    print("settings:")
    print(f"  TELEGRAM_BOT_TOKEN={mask_secret(settings.token)}"
          + ("" if settings.token else "  (alerts go to the terminal)"))
    from bot.log import RedactingFilter  # credentials in the URL (user:pass@, ?key=) are shown as the log shows them

    print(f"  TELEGRAM_API_BASE_URL={RedactingFilter([]).redact(settings.api_base_url)}")
    print(f"  MEDIABOT_STATE_DIR={settings.state_dir}  MEDIABOT_POLL_INTERVAL={settings.poll_interval:g}s "
          f"(min {settings.poll_min_interval:g}s, max {settings.poll_max_interval:g}s)")
    print(f"  MEDIABOT_ADMINS={','.join(map(str, sorted(settings.admins))) or '(none)'}  "
          f"MEDIABOT_ALLOWED_USERS={'(open bot)' if not settings.allowed else len(settings.allowed)}  "
          f"MEDIABOT_TIMEZONE={settings.timezone}  MEDIABOT_LANGUAGE={settings.language}")
    return EXIT_OK


def state_dir_problem(state_dir: Path) -> str | None:
    """Why the bot could not keep its store in `state_dir` (as this user), or None. Looks only: a
    `check` must not create the directory or take the lock of a running bot."""
    if state_dir.exists():
        if not state_dir.is_dir():
            return f"{state_dir} is not a directory"
        if not os.access(state_dir, os.W_OK | os.X_OK):
            return f"{state_dir} is not writable by uid {os.getuid()} (in the container mediabot runs as uid 10001)"
        db = state_dir / "mediabot.db"
        if db.exists() and not os.access(db, os.R_OK | os.W_OK):
            return f"{db} is not writable by uid {os.getuid()}"
        return None
    parent = state_dir.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        return f"{state_dir} does not exist and cannot be created in {parent}"
    return None


# --------------------------------------------------------------------------- poll --once


def _cmd_poll(args: argparse.Namespace) -> int:
    loaded = _load_serving()
    if isinstance(loaded, int):
        return loaded
    with asyncio.Runner() as runner:
        code = runner.run(_poll_once(loaded.settings, loaded.config, rejected=loaded.problems,
                                     signature=loaded.signature))
        if code > 128:  # stopped by a signal: a cancelled feed may still be parsing in a worker thread
            _exit_now_if_threads_linger(code)
        return code


async def _poll_once(settings: Settings, config: Config, stream: IO[str] = sys.stdout,
                     rejected: Sequence[str] = (), signature: dict[str, tuple[int, int, str]] | None = None) -> int:
    from bot.app import build_runtime
    from bot.pipeline import run_cycle
    from bot.scheduler import config_served, prune_store

    try:
        rt = build_runtime(settings, config, console_stream=stream)
    except StoreError as exc:
        return _refused(exc)
    config_served(rt, settings, rejected, signature if signature is not None else
                  config_signature(settings.watchlists_dir))
    # SIGTERM (a pod deleted, a deadline) or Ctrl-C: stop polling, let the sends in flight settle, close
    # the store; what was recorded stays, unsent alerts wait for the next run. (Killed outright, the
    # sends in flight went out again next time; as PID 1 in a container the signal was ignored.)
    stopped: list[int] = list(EARLY_SIGNALS)
    cycle = asyncio.ensure_future(run_cycle(rt.ctx, ignore_schedule=True))
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        stopped.append(signum)
        cycle.cancel()
        rt.deliverer.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    if stopped:
        on_signal(stopped[0])
    try:
        try:
            report = await cycle
        except asyncio.CancelledError:
            report = None
        if not stopped:
            stats = await rt.deliverer.drain(timeout=600)
            await prune_store(rt, settings, datetime.now(UTC))  # cron mode has no 6-hourly job: keep it bounded
    finally:
        await rt.aclose()  # (a signal meanwhile still finds the handler: no death by SIGTERM while closing)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    if stopped or report is None:
        name = signal.Signals(stopped[0]).name if stopped else "a signal"
        print(f"mediabot: stopped by {name}; what was recorded is kept, alerts not yet sent go out on the next run",
              file=sys.stderr)
        return 128 + (stopped[0] if stopped else signal.SIGTERM)
    polled = len(report.feeds_ok) + len(report.feeds_not_modified) + len(report.feeds_failed)
    print(f"polled {polled} feeds: {len(report.feeds_ok)} updated, {len(report.feeds_not_modified)} unchanged, "
          f"{len(report.feeds_failed)} failed; {report.new_items} new items, {report.matched} matched, "
          f"{report.queued} alerts queued, {stats.sent} sent", file=sys.stderr)
    for feed_id, error in sorted(report.feeds_failed.items()):
        print(f"  failed: {feed_id}: {error}", file=sys.stderr)
    if report.feeds_waiting:
        print(f"{len(report.feeds_waiting)} feeds not polled (failing, waiting for their next try, or disabled):",
              file=sys.stderr)
        for feed_id, why in sorted(report.feeds_waiting.items()):
            print(f"  waiting: {feed_id}: {why}", file=sys.stderr)
    if rt.deliverer.token_rejected:  # the cycle's work is stored; only sending waits for a new token
        print(f"mediabot: {TokenRejectedError()}; the alerts stay queued", file=sys.stderr)
        return EXIT_CONFIG
    if rejected:  # the run served the last good config: the cron job still shows red until the YAML is fixed
        print(f"mediabot: polled with the last good config; {len(rejected)} problem(s) in the YAML to fix (above)",
              file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_OK


# --------------------------------------------------------------------------- run


def _cmd_run(args: argparse.Namespace) -> int:
    loaded = _load_serving()
    if isinstance(loaded, int):
        return loaded
    from bot.scheduler import ABANDONED, run_daemon

    try:
        with asyncio.Runner() as runner:
            code = runner.run(run_daemon(loaded.settings, loaded.config, EARLY_SIGNALS, rejected=loaded.problems,
                                         signature=loaded.signature))
            if ABANDONED:
                _exit_now_if_threads_linger(code)
            return code
    except StoreError as exc:
        return _refused(exc)


def _exit_now_if_threads_linger(code: int) -> None:
    """After a stop, a worker thread may still be parsing or matching a big feed for a cycle that was
    cancelled. Waiting for it (as the interpreter does) made a stop take longer than the 10 s a container
    gets; its feed is polled again at the next start, and everything else is already closed and logged."""
    import logging
    import threading

    busy = [t for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon and t.is_alive()]
    if busy:
        logging.getLogger(__name__).info("not waiting for %d worker threads of the stopped run", len(busy))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _refused(exc: StoreError) -> int:
    """The store refused (another instance, a newer or broken store): say why, exit 3 or 4."""
    print(f"mediabot: {exc}", file=sys.stderr)
    return EXIT_LOCKED if isinstance(exc, StoreLockedError) else EXIT_STORE


# --------------------------------------------------------------------------- match


def _cmd_match(args: argparse.Namespace) -> int:
    loaded = _load()
    if isinstance(loaded, int):
        return loaded
    settings, config = loaded
    try:
        # Bytes that are not UTF-8 become U+FFFD, as on stdin: one bad byte must not cost the whole file.
        source = args.items.open(encoding="utf-8", errors="replace") if args.items else sys.stdin
    except OSError as exc:
        print(f"mediabot: cannot read {args.items}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    with source:
        return match_stream(source, sys.stdout, config, settings, explain=args.explain)


def match_stream(source: IO[str], out: IO[str], config: Config, settings: Settings, explain: bool = False) -> int:
    """The `match` JSONL contract: one output line per input line, in order.

    `duplicate_of` is what the pipeline would decide: the same canonical link as an earlier record (the
    bot would drop it as seen), else a near copy of an earlier record's story (same language, within
    the dedup window; a record without `published` counts as published when the record before it was)."""
    from bot.dedup import StoryIndex, item_from_record, record_problem
    from bot.match import Matcher

    matcher = Matcher(config.watchlists)
    index = StoryIndex(window=settings.dedup_window)
    story_of_link: dict[str, Any] = {}
    last_dated: datetime | None = None
    bad = 0
    for lineno, line in enumerate(source, 1):
        if lineno == 1:
            line = line.removeprefix("\ufeff")  # a byte-order mark, as Windows editors write one
        if not line.strip():
            continue
        try:
            if len(line) > MAX_RECORD_CHARS:  # the bot keeps 2,500 characters of an item: this is not one
                raise ValueError(f"longer than {MAX_RECORD_CHARS:,} characters")
            record = json.loads(line)
            problem = record_problem(record)
        except json.JSONDecodeError as exc:  # its own "line 1 column 8" would contradict the line number shown
            problem = (f"not a JSON object: {exc.msg} at column {exc.colno}"
                       + (" (a missing comma, or a quote inside a text not written as \\\")"
                          if "delimiter" in exc.msg else ""))
        except (ValueError, RecursionError) as exc:  # (RecursionError: arrays nested thousands deep)
            problem = str(exc) if isinstance(exc, ValueError) else "nested too deeply"
        if problem:
            bad += 1
            print(f"mediabot: line {lineno}: {problem}", file=sys.stderr)
            out.write(json.dumps({"id": None, "line": lineno, "error": problem}) + "\n")
            continue
        item = item_from_record(record, undated=last_dated)
        if item.dated:
            last_dated = item.published
        matches = matcher.match(item.title, item.summary)
        duplicate_of = story_of_link.get(item.canonical_link) if item.canonical_link else None
        if duplicate_of is None:
            duplicate_of = index.check(item, record["id"])
            if item.canonical_link:
                story_of_link[item.canonical_link] = record["id"] if duplicate_of is None else duplicate_of
        result = {
            "id": record["id"],
            "watchlists": [m.watchlist for m in matches],
            "matches": [{"watchlist": m.watchlist, "score": m.score, "terms": m.terms,
                         "where": [{"term": h.term, "text": h.text, "field": h.field,
                                    "word": h.position} for h in m.hits]} for m in matches],
            "duplicate_of": duplicate_of,
        }
        if explain:
            result["why"] = matcher.explain(item.title, item.summary)
        text = json.dumps(result, ensure_ascii=False)
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate from a \ud800 escape: keep it escaped
                text = json.dumps(result)
        out.write(text + "\n")
    out.flush()
    return EXIT_USAGE if bad else EXIT_OK


# --------------------------------------------------------------------------- demo


def _cmd_demo(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    setup_logging("ERROR", [settings.token or ""])  # the progress display says what happens
    from bot.demo import shipped_watchlists_dir

    wdir = settings.watchlists_dir
    if not (wdir / "feeds.yaml").exists():
        wdir = shipped_watchlists_dir()
    try:
        config = load_config(wdir)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    return asyncio.run(_demo(settings, config))


async def _demo(settings: Settings, config: Config) -> int:
    from bot.app import build_runtime
    from bot.demo import serve_demo_feeds
    from bot.pipeline import FeedOutcome, run_cycle

    err = sys.stderr
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mediabot-demo-") as tmp, serve_demo_feeds() as feeds:
        demo_settings = replace(settings, state_dir=Path(tmp), token=None, admins=frozenset())
        demo_config = Config(tuple(feeds), config.watchlists)
        print(f"mediabot demo: {len(feeds)} sample feeds on a loopback server, watchlists: "
              f"{', '.join(w.id for w in config.watchlists)}", file=err)
        rt = build_runtime(demo_settings, demo_config, force_console=True)

        def progress(o: FeedOutcome) -> None:
            mark = "✓" if o.status in ("ok", "not_modified") else "✗"
            detail = o.error or f"{o.new} new, {o.matched} matched, {o.queued} alerts"
            print(f"  {mark} {o.feed_id}: {detail}", file=err)

        rt.ctx.on_feed = progress
        try:
            print("poll 1 (first poll of each feed: only items from the last "
                  f"{settings.recent_window / 3600:g} h may alert):", file=err)
            report = await run_cycle(rt.ctx, ignore_schedule=True)
            sent1 = (await rt.deliverer.drain(timeout=60)).sent
            print("─" * 72, file=sys.stdout, flush=True)
            print("poll 2 (same feeds again: nothing is new, nothing is sent twice):", file=err)
            report2 = await run_cycle(rt.ctx, ignore_schedule=True)
            sent2 = (await rt.deliverer.drain(timeout=60)).sent - sent1
        finally:
            await rt.aclose()
    print(f"done in {time.monotonic() - started:.1f} s: {report.new_items} items, {report.matched} matched, "
          f"{sent1} alerts printed; second poll: {report2.new_items} new, {sent2} alerts.", file=err)
    print("Set TELEGRAM_BOT_TOKEN and run `mediabot run` to send real alerts.", file=err)
    return EXIT_OK


# --------------------------------------------------------------------------- health


def _cmd_health(args: argparse.Namespace) -> int:
    """Exit 0 when healthy, 1 when not (the HEALTHCHECK contract); the reason goes to stdout."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem)
        return EXIT_USAGE  # Docker reserves exit 2 in health checks; 1 means unhealthy
    from bot.health import probe

    healthy, detail = probe(settings)
    print(detail)
    return EXIT_OK if healthy else EXIT_USAGE


# --------------------------------------------------------------------------- backtest


def _cmd_backtest(args: argparse.Namespace) -> int:
    loaded = _load()
    if isinstance(loaded, int):
        return loaded
    settings, config = loaded
    from bot.backtest import run_backtest

    return run_backtest(args.watchlist, args.since, settings, config, sys.stdout, words=args.words, err=sys.stderr)

