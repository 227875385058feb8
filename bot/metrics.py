"""Prometheus metrics of one process, in its own CollectorRegistry (never the global one, so tests
and several runtimes in one process do not clash). Holds counters only; contains no business logic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily

from bot.deliver import DeliveryStats
from bot.models import OutboxRow
from bot.pipeline import FeedOutcome

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Cycles run from under a second (a few feeds, not modified) to minutes (1,000 changed feeds).
_CYCLE_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
# Delivery lag: queued → accepted by Telegram; pacing keeps a big fan-out in the minutes.
_LAG_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600, 14400)


class _DeliveryCollector:
    """Exports the Deliverer's own counters at scrape time, so deliver.py needs no metrics code."""

    def __init__(self, stats: Callable[[], DeliveryStats | None]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Any]:
        stats = self._stats()
        if stats is None:
            return
        values = {
            "failed": ("mediabot_alerts_failed", "Messages given up on (rejected or too many attempts)",
                       stats.failed),
            "retried": ("mediabot_alerts_retried", "Sends deferred to a later attempt", stats.retried),
            "rate_limited": ("mediabot_telegram_429", "Telegram 429 Too Many Requests (RetryAfter) answers",
                             stats.rate_limited),
            "chats_gone": ("mediabot_chats_gone", "Chats found blocked, deleted or unreachable", stats.chats_gone),
            "maybe_repeated": ("mediabot_sends_maybe_repeated", "Messages sent again after Telegram's answer was "
                               "lost (they may arrive twice)", stats.maybe_repeated),
        }
        for name, doc, value in values.values():
            family = CounterMetricFamily(name, doc)
            family.add_metric([], value)
            yield family

    def describe(self) -> Iterator[Any]:
        return iter(())  # collected lazily; no need to describe up front


class Metrics:
    """The metric objects, plus small hook functions that the scheduler plugs into the pipeline."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.feeds_polled = Counter("mediabot_feeds_polled", "Feed polls by outcome", ["status"], registry=r)
        self.feeds_failed = Counter("mediabot_feeds_failed", "Feed polls that failed", registry=r)
        self.items_seen = Counter("mediabot_items_seen", "New items recorded", registry=r)
        self.matches = Counter("mediabot_matches", "Items matched, per watchlist", ["watchlist"], registry=r)
        self.alerts_queued = Counter("mediabot_alerts_queued", "Alerts put into the outbox", registry=r)
        self.alerts_sent = Counter("mediabot_alerts_sent", "Messages accepted by Telegram (or the terminal)",
                                   ["kind"], registry=r)
        self.cycles = Counter("mediabot_cycles", "Poll cycles by result", ["result"], registry=r)
        self.cycle_seconds = Histogram("mediabot_cycle_duration_seconds", "Duration of one poll cycle",
                                       buckets=_CYCLE_BUCKETS, registry=r)
        self.delivery_lag = Histogram("mediabot_delivery_lag_seconds", "From queued to accepted by Telegram",
                                      buckets=_LAG_BUCKETS, registry=r)
        self.outbox_depth = Gauge("mediabot_outbox_depth", "Outbox rows still to send (pending or held)",
                                  registry=r)
        self.feeds_failing = Gauge("mediabot_feeds_failing", "Feeds whose last poll in this process failed",
                                   registry=r)
        self._failing: set[str] = set()
        self.up_since = Gauge("mediabot_start_time_seconds", "Unix time the process started", registry=r)
        self.up_since.set_to_current_time()
        self._stats: DeliveryStats | None = None
        r.register(_DeliveryCollector(lambda: self._stats))

    def watch_delivery(self, stats: DeliveryStats) -> None:
        """Export this Deliverer's counters (failed, retried, 429s, chats gone)."""
        self._stats = stats

    def failing_at_start(self, feed_ids: Iterable[str]) -> None:
        """Feeds whose last poll (before this process) failed: they count until they are polled again."""
        self._failing.update(feed_ids)
        self.feeds_failing.set(len(self._failing))

    def feeds_in_force(self, feed_ids: Iterable[str]) -> None:
        """After a reload: a feed removed or disabled is polled no more, and no longer counts as failing
        (an alert on the gauge never cleared once the admin had taken a dead feed out)."""
        self._failing.intersection_update(feed_ids)
        self.feeds_failing.set(len(self._failing))

    def on_feed(self, outcome: FeedOutcome) -> None:
        """`CycleContext.on_feed` hook: one feed poll finished."""
        self.feeds_polled.labels(outcome.status).inc()
        if outcome.status == "error":
            self.feeds_failed.inc()
            self._failing.add(outcome.feed_id)
        else:
            self._failing.discard(outcome.feed_id)
        self.feeds_failing.set(len(self._failing))
        self.items_seen.inc(outcome.new)
        self.alerts_queued.inc(outcome.queued)
        for watchlist, count in outcome.by_watchlist.items():
            self.matches.labels(watchlist).inc(count)

    def on_cycle(self, seconds: float, ok: bool) -> None:
        """A poll cycle ended (`ok` False: it crashed)."""
        self.cycle_seconds.observe(seconds)
        self.cycles.labels("ok" if ok else "crashed").inc()

    def on_sent(self, row: OutboxRow, now: datetime | None = None) -> None:
        """`Deliverer.on_sent` hook: a row was accepted."""
        self.alerts_sent.labels(row.kind).inc()
        if row.created is not None:
            lag = ((now or datetime.now(UTC)) - row.created).total_seconds()
            self.delivery_lag.observe(max(0.0, lag))

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)
