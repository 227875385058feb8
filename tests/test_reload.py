"""The daemon picks up edited YAML within seconds; a broken edit keeps the last good config and the
bot admins are told in Telegram."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tests.conftest import ROOT, write_feeds_yaml
from tests.servers import Route, rss

ADMIN = 777


def test_broken_edit_is_rejected_with_file_and_line_and_a_good_edit_is_swapped_in(workdir, feed_server, telegram):
    wdir = workdir / "watchlists"
    write_feeds_yaml(wdir, [{"id": "n", "url": feed_server.url("/n.xml"), "name": "N", "lang": "de"}])
    feed_server.routes["/n.xml"] = Route(rss([]))
    env = {**os.environ, "TELEGRAM_BOT_TOKEN": telegram.TOKEN, "TELEGRAM_API_BASE_URL": telegram.base_url,
           "MEDIABOT_WATCHLISTS_DIR": str(wdir), "MEDIABOT_STATE_DIR": str(workdir / "state"),
           "MEDIABOT_ADMINS": str(ADMIN), "MEDIABOT_LOG_LEVEL": "INFO"}
    daemon = subprocess.Popen([sys.executable, "-m", "bot", "run"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert telegram.wait_for(lambda: feed_server.hits("/n.xml") >= 1, timeout=15)
        time.sleep(1.5)  # let the daemon take its first look at the files
        broken = wdir / "extra.yaml"
        broken.write_text("description: x\ngroups:\n  a: [Kursk]\nrules:\n  - all: [a, b]\n", encoding="utf-8")
        assert telegram.wait_for(lambda: bool(telegram.sent_to(ADMIN)), timeout=15)
        notice = telegram.sent_to(ADMIN)[0].text
        assert "rejected" in notice and f"{broken}:5:" in notice
        assert daemon.poll() is None  # still running on the last good config
        broken.write_text("description: x\ngroups:\n  a: [Kursk]\n", encoding="utf-8")
        time.sleep(7)  # two reload intervals; the log is read after the daemon stops
        assert daemon.poll() is None
    finally:
        daemon.terminate()
        _out, err = daemon.communicate(timeout=15)
    assert "config reloaded" in err and "watchlists=4" in err
    assert daemon.returncode == 0

