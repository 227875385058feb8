"""Shared fixtures: loopback servers (stopped by the fixture that starts them), paths, env."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import FeedServer, TelegramStub

ROOT = Path(__file__).resolve().parent.parent
SHARED_FEEDS = ROOT.parent / "shared" / "feeds" / "real"


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def telegram() -> Iterator[TelegramStub]:
    stub = TelegramStub().start()
    try:
        yield stub
    finally:
        stub.stop()


def write_feeds_yaml(directory: Path, feeds: list[dict[str, str]]) -> None:
    lines = ["feeds:"]
    for f in feeds:
        lines.append(f"  - id: {f['id']}")
        for key in ("url", "name", "lang"):
            if key in f:
                lines.append(f"    {key}: {f[key]}")
        lines.append("    allow_private: true")
        for key, value in f.items():
            if key not in ("id", "url", "name", "lang"):
                lines.append(f"    {key}: {value}")
    (directory / "feeds.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A watchlists dir with the shipped watchlists and an empty state dir."""
    wl = tmp_path / "watchlists"
    wl.mkdir()
    for src in (ROOT / "watchlists").glob("*.yaml"):
        if src.name != "feeds.yaml":
            (wl / src.name).write_text(src.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "state").mkdir()
    return tmp_path


def run_cli(args: list[str], env: dict[str, str], *, input: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `python -m bot ...` as a real subprocess."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDIABOT_", "TELEGRAM_"))}
    full_env.update(env)
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=ROOT, env=full_env, input=input,
                          capture_output=True, text=True, timeout=timeout)


def stop_daemon(daemon: subprocess.Popen[str], timeout: float = 15) -> str:
    """SIGTERM a daemon a test started and return its stderr; a daemon that does not stop in time is
    killed (so a failing test never leaves it holding the state directory and ports) and the test fails."""
    daemon.terminate()
    try:
        return daemon.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        daemon.kill()
        err = daemon.communicate()[1]
        raise AssertionError(f"the daemon did not stop within {timeout} s of SIGTERM:\n{err[-3000:]}") from None
