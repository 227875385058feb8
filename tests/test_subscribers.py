"""Pure subscriber decisions: durations, quiet windows, digest slots, holds, releases."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.subscribers import (
    ChatPrefs,
    DigestMode,
    QuietHours,
    held_until,
    next_digest,
    over_backlog,
    parse_digest,
    parse_mute,
    parse_quiet,
    plan_release,
    quiet_end,
)

BERLIN = ZoneInfo("Europe/Berlin")
# 2026-11-25 is winter time: Berlin = UTC+1
NOW = datetime(2026, 11, 25, 21, 30, tzinfo=UTC)  # 22:30 in Berlin


@pytest.mark.parametrize(("text", "expected"), [
    ("2h", timedelta(hours=2)), ("1d", timedelta(days=1)), ("30m", timedelta(minutes=30)),
    ("3", timedelta(hours=3)), ("1w", timedelta(weeks=1)), ("90d", timedelta(days=30)), (" 2H ", timedelta(hours=2)),
])
def test_parse_mute_accepts_common_durations(text, expected):
    assert parse_mute(text) == expected


@pytest.mark.parametrize("text", ["", "soon", "0h", "-2h", "2y", "h"])
def test_parse_mute_rejects_nonsense(text):
    with pytest.raises(ValueError):
        parse_mute(text)


@pytest.mark.parametrize(("text", "expected"), [
    ("22:00-07:00", QuietHours(time(22), time(7))),
    ("8.30-12:00", QuietHours(time(8, 30), time(12))),
    ("23:00–06:00", QuietHours(time(23), time(6))),
    ("off", None), ("aus", None),
])
def test_parse_quiet(text, expected):
    assert parse_quiet(text) == expected


@pytest.mark.parametrize("text", ["25-07", "25:00-07:00", "22:00", "07:00-07:00", "x-y"])
def test_parse_quiet_rejects_bad_windows(text):
    with pytest.raises(ValueError):
        parse_quiet(text)


@pytest.mark.parametrize(("window", "now", "end"), [
    # crossing midnight, evening side: ends tomorrow 07:00 Berlin = 06:00 UTC
    ("22:00-07:00", NOW, datetime(2026, 11, 26, 6, 0, tzinfo=UTC)),
    # crossing midnight, morning side
    ("22:00-07:00", datetime(2026, 11, 26, 3, 0, tzinfo=UTC), datetime(2026, 11, 26, 6, 0, tzinfo=UTC)),
    # outside
    ("22:00-07:00", datetime(2026, 11, 26, 12, 0, tzinfo=UTC), None),
    # the end itself is no longer quiet
    ("22:00-07:00", datetime(2026, 11, 26, 6, 0, tzinfo=UTC), None),
    # a daytime window
    ("12:00-14:00", datetime(2026, 11, 26, 11, 30, tzinfo=UTC), datetime(2026, 11, 26, 13, 0, tzinfo=UTC)),
    ("12:00-14:00", NOW, None),
])
def test_quiet_end(window, now, end):
    assert quiet_end(parse_quiet(window), now, BERLIN) == end


@pytest.mark.parametrize(("text", "expected"), [
    ("off", DigestMode("off")), ("hourly", DigestMode("hourly")), ("daily", DigestMode("daily", time(8))),
    ("daily 18:30", DigestMode("daily", time(18, 30))), ("täglich 07:00", DigestMode("daily", time(7))),
])
def test_parse_digest(text, expected):
    assert parse_digest(text) == expected
    assert str(expected) in ("off", "hourly") or str(expected).startswith("daily ")


@pytest.mark.parametrize("text", ["", "weekly", "hourly 08:00", "daily 8:7", "daily 25"])
def test_parse_digest_rejects(text):
    with pytest.raises(ValueError):
        parse_digest(text)


@pytest.mark.parametrize(("mode", "after", "slot"), [
    (DigestMode("off"), NOW, None),
    (DigestMode("hourly"), NOW, datetime(2026, 11, 25, 22, 0, tzinfo=UTC)),
    (DigestMode("daily", time(8)), NOW, datetime(2026, 11, 26, 7, 0, tzinfo=UTC)),
    (DigestMode("daily", time(23)), NOW, datetime(2026, 11, 25, 22, 0, tzinfo=UTC)),
])
def test_next_digest(mode, after, slot):
    assert next_digest(mode, after, BERLIN) == slot


MUTED = NOW + timedelta(hours=2)


@pytest.mark.parametrize(("prefs", "wl_mute", "created", "now", "expected"), [
    (ChatPrefs(), None, NOW, NOW, None),  # nothing set: send now
    (ChatPrefs(muted_until=MUTED), None, NOW, NOW, MUTED),
    (ChatPrefs(muted_until=NOW - timedelta(seconds=1)), None, NOW, NOW, None),  # mute over
    (ChatPrefs(), MUTED, NOW, NOW, MUTED),  # the alert's mute button
    # quiet hours at 22:30 Berlin: held until 07:00 Berlin
    (ChatPrefs(quiet=QuietHours(time(22), time(7))), None, NOW, NOW, datetime(2026, 11, 26, 6, tzinfo=UTC)),
    # a mute that ends inside quiet hours is extended to their end
    (ChatPrefs(muted_until=MUTED, quiet=QuietHours(time(22), time(7))), None, NOW, NOW,
     datetime(2026, 11, 26, 6, tzinfo=UTC)),
    # hourly digest: an alert from 22:30 waits for 23:00 Berlin
    (ChatPrefs(digest=DigestMode("hourly")), None, NOW, NOW, datetime(2026, 11, 25, 22, tzinfo=UTC)),
    # ... and is free once that slot passed
    (ChatPrefs(digest=DigestMode("hourly")), None, NOW, NOW + timedelta(hours=1), None),
])
def test_held_until(prefs, wl_mute, created, now, expected):
    assert held_until(prefs, created, now, BERLIN, wl_mute) == expected


@pytest.mark.parametrize(("held", "ids", "digest"), [
    ([], (), False),
    ([(1, None)], (1,), False),  # one alert goes as it was
    ([(1, None), (2, None), (3, MUTED)], (1, 2), True),  # several go as one digest
    ([(1, MUTED)], (), False),
])
def test_plan_release(held, ids, digest):
    plan = plan_release(held)
    assert plan.row_ids == ids and plan.as_digest == digest


@pytest.mark.parametrize(("pending", "threshold", "expected"), [(10, 10, False), (11, 10, True), (50, 0, False)])
def test_over_backlog(pending, threshold, expected):
    assert over_backlog(pending, threshold) is expected


def test_chat_prefs_from_store_row_ignores_bad_values():
    prefs = ChatPrefs.from_row({"muted_until": MUTED.isoformat(), "quiet": "garbage", "digest": "weekly"})
    assert prefs == ChatPrefs(muted_until=MUTED)
    assert ChatPrefs.from_row(None) == ChatPrefs()


@pytest.mark.parametrize(("mode", "created", "expected"), [
    # clocks go back 2026-10-25 03:00 CEST -> 02:00 CET: the repeated hour is a real hour
    ("hourly", "2026-10-25T00:10", "2026-10-25T01:00"),  # 02:10 CEST -> 02:00 CET (was 03:00 CET, 1 h 50 late)
    ("hourly", "2026-10-25T01:10", "2026-10-25T02:00"),  # 02:10 CET -> 03:00 CET
    ("hourly", "2026-03-29T00:10", "2026-03-29T01:00"),  # 01:10 CET -> 03:00 CEST (02:xx does not exist)
    # a daily slot inside the repeated hour is never in the past (an alert was sent at once instead of held)
    ("daily 02:30", "2026-10-25T01:15", "2026-10-26T01:30"),  # 02:15 CET: today's 02:30 CEST has passed
    ("daily 02:30", "2026-10-24T23:00", "2026-10-25T00:30"),
    # the slot falls into the gap when clocks go forward: alerts from 03:00-03:30 CEST go with it
    ("daily 02:30", "2026-03-29T01:15", "2026-03-29T01:30"),
])
def test_digest_times_across_daylight_saving_changes(mode, created, expected):
    after = datetime.fromisoformat(created).replace(tzinfo=UTC)
    slot = next_digest(parse_digest(mode), after, ZoneInfo("Europe/Berlin"))
    assert slot == datetime.fromisoformat(expected).replace(tzinfo=UTC)
    assert slot > after


def test_quiet_hours_in_the_repeated_hour_end_at_the_wall_clock_end():
    quiet = parse_quiet("22:00-02:30")
    second_pass = datetime(2026, 10, 25, 1, 15, tzinfo=UTC)  # 02:15 CET, the second 02:15 of the night
    assert quiet_end(quiet, second_pass, ZoneInfo("Europe/Berlin")) == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)


@pytest.mark.parametrize(("written", "start", "end"), [
    ("22-7", time(22, 0), time(7, 0)), ("22h-7h", time(22, 0), time(7, 0)), ("22 Uhr - 7 Uhr", time(22, 0), time(7, 0)),
    ("21.30-6", time(21, 30), time(6, 0)),
])
def test_quiet_hours_as_whole_hours(written, start, end):
    assert parse_quiet(written) == QuietHours(start, end)


def test_a_daily_digest_at_a_whole_hour():
    assert parse_digest("daily 8") == parse_digest("daily 08:00") == parse_digest("täglich 8 Uhr")
    with pytest.raises(ValueError):
        parse_digest("daily 24")
