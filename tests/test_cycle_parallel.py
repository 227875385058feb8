"""A big cycle parses in a second process and writes through one store thread; results are the same."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

from bot.app import build_runtime
from bot.config import Config, load_config, load_settings
from bot.models import FeedSpec
from bot.pipeline import run_cycle
from tests.conftest import ROOT
from tests.servers import Route, rss


async def test_cycle_with_the_parse_process_records_and_alerts(tmp_path, feed_server):
    feeds = []
    for i in range(6):
        feed_server.routes[f"/f{i}.xml"] = Route(rss([
            {"title": f"Nordkoreanische Soldaten kämpfen im Gebiet Kursk (Lage {i})",
             "description": f"Kiew meldet Gefechte mit Truppen aus Nordkorea, Frontabschnitt {i * 7919}.",
             "link": f"https://x{i}.example/a", "guid": f"a{i}", "ago": 5},
            {"title": f"Wetterbericht {i}", "link": f"https://x{i}.example/b", "guid": f"b{i}", "ago": 6},
        ]))
        feeds.append(FeedSpec(id=f"f{i}", url=feed_server.url(f"/f{i}.xml"), name=f"F{i}", lang="de",
                              allow_private=True))
    settings = replace(load_settings({}), state_dir=tmp_path / "state", token=None)
    config = Config(tuple(feeds), load_config(ROOT / "watchlists").watchlists)
    out = io.StringIO()
    rt = build_runtime(settings, config, force_console=True, console_stream=out)
    rt.ctx.parse_process_from = 1  # every cycle counts as big here
    try:
        report = await run_cycle(rt.ctx, ignore_schedule=True)
        await rt.deliverer.drain(timeout=30)
        assert rt.ctx._parser is not None  # the parse process was used
        assert sorted(report.feeds_ok) == [f"f{i}" for i in range(6)]
        assert report.new_items == 12
        assert rt.store.count("items") == 12
    finally:
        await rt.aclose()
    assert rt.ctx._parser is None and rt.ctx._writer is None  # both stopped
    assert out.getvalue().count("Nordkoreanische Soldaten kämpfen im Gebiet Kursk") >= 1
    assert "Wetterbericht" not in out.getvalue()


def test_poll_once_with_sixty_feeds_uses_the_parse_process_from_the_cli(workdir, feed_server):
    """A real `python -m bot poll --once` over 60 feeds (a big cycle, so the parse process runs): every feed
    is recorded, and one story carried by all of them alerts once."""
    from tests.conftest import run_cli, write_feeds_yaml

    feeds = []
    for i in range(60):
        feed_server.routes[f"/f{i}.xml"] = Route(rss([
            # one agency text under sixty outlets' links (numbered headlines would be sixty situation reports)
            {"title": "Nordkoreanische Soldaten kämpfen im Gebiet Kursk",
             "description": "Kiew: Truppen aus Nordkorea kämpfen an der Seite Russlands im Gebiet Kursk.",
             "link": f"https://x{i}.example/1", "guid": f"g{i}", "ago": 3},
            {"title": f"Wetter in Region {i}", "link": f"https://x{i}.example/2", "guid": f"w{i}", "ago": 4},
        ]))
        feeds.append({"id": f"f{i}", "url": feed_server.url(f"/f{i}.xml"), "name": f"Outlet {i}", "lang": "de"})
    write_feeds_yaml(workdir / "watchlists", feeds)
    env = {"MEDIABOT_WATCHLISTS_DIR": str(workdir / "watchlists"), "MEDIABOT_STATE_DIR": str(workdir / "state")}
    result = run_cli(["poll", "--once"], env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "polled 60 feeds: 60 updated" in result.stderr
    assert "120 new items, 60 matched" in result.stderr
    assert "Nordkoreanische Soldaten" in result.stdout and "Wetter in Region" not in result.stdout
    # Sixty outlets carrying one story in the same cycle: one alert, the others fold into it.
    assert result.stdout.count("─" * 72) == 1, result.stdout
    assert "1 alerts queued, 1 sent" in result.stderr


def test_the_parse_process_ends_with_a_daemon_killed_outright(workdir, feed_server):
    """kill -9 (the OOM killer) never shuts the pool down: the parse process, the forkserver and its resource
    tracker stayed for good (~64 MB per kill), holding the daemon's output pipes open."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT, write_feeds_yaml

    feeds = []
    for i in range(60):
        feed_server.routes[f"/f{i}.xml"] = Route(rss([{"title": f"Wetter in Region {i}", "guid": f"w{i}",
                                                        "link": f"https://x{i}.example/2", "ago": 4}]))
        feeds.append({"id": f"f{i}", "url": feed_server.url(f"/f{i}.xml"), "name": f"Outlet {i}", "lang": "de"})
    write_feeds_yaml(workdir / "watchlists", feeds)
    env = {**os.environ, "MEDIABOT_WATCHLISTS_DIR": str(workdir / "watchlists"),
           "MEDIABOT_STATE_DIR": str(workdir / "state")}
    daemon = subprocess.Popen([sys.executable, "-m", "bot", "run"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def descendants(pid: int) -> set[int]:
        out: set[int] = set()
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                out |= {child, *descendants(child)}
        return out

    try:
        deadline = time.monotonic() + 30
        family: set[int] = set()
        while time.monotonic() < deadline and len(family) < 3:  # the forkserver, its tracker, the worker
            time.sleep(0.2)
            family = descendants(daemon.pid)
        assert len(family) >= 3, "the parse process did not start"
    finally:
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in family):
        time.sleep(0.2)
    alive = [p for p in family if Path(f"/proc/{p}").exists()]
    for p in alive:  # (do not leave them behind, whatever the outcome)
        os.kill(p, signal.SIGKILL)
    assert alive == []
