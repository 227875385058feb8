"""The command line as a user runs it: real subprocesses, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, run_cli, write_feeds_yaml
from tests.servers import FeedServer, Route, TelegramStub, rss


def test_check_accepts_the_shipped_config():
    result = run_cli(["check"], {"MEDIABOT_WATCHLISTS_DIR": str(ROOT / "watchlists")})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK:" in result.stdout
    for wl in ("dprk-troops", "kursk-front", "russia-dprk-treaty"):
        assert wl in result.stdout


def test_output_cut_short_by_its_reader_ends_quietly():
    # `mediabot check | head -1`: the reader goes away before mediabot has written everything.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDIABOT_", "TELEGRAM_"))}
    env["MEDIABOT_WATCHLISTS_DIR"] = str(ROOT / "watchlists")
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will ever read
    with open(write_end, "wb") as stdout:
        proc = subprocess.run([sys.executable, "-m", "bot", "check"], cwd=ROOT, env=env, stdout=stdout,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    assert proc.returncode == 141
    assert "Traceback" not in proc.stderr and "uncaught exception" not in proc.stderr, proc.stderr


def test_check_reports_broken_yaml_with_file_and_line(workdir: Path):
    write_feeds_yaml(workdir / "watchlists", [{"id": "a", "url": "http://127.0.0.1:1/x", "name": "A", "lang": "de"}])
    bad = workdir / "watchlists" / "broken.yaml"
    bad.write_text("description: test\ngroups:\n  one:\n    - Kursk\n    - [unclosed\n", encoding="utf-8")
    result = run_cli(["check"], {"MEDIABOT_WATCHLISTS_DIR": str(workdir / "watchlists")})
    assert result.returncode == 2
    assert f"{bad}:" in result.stdout
    line = result.stdout.split(f"{bad}:")[1].split(":")[0]
    assert line.isdigit() and int(line) >= 5


def test_check_reports_every_problem_with_its_line(workdir: Path):
    write_feeds_yaml(workdir / "watchlists", [{"id": "a", "url": "http://127.0.0.1:1/x", "name": "A", "lang": "de"}])
    wl = workdir / "watchlists" / "typo.yaml"
    wl.write_text(
        "description: test\n"          # 1
        "treshold: 80\n"               # 2 unknown key
        "groups:\n"                    # 3
        "  place:\n"                   # 4
        "    - term: Kursk\n"          # 5
        "      mode: magic\n"          # 6 bad mode
        "    - {term: '(a+', mode: regex}\n"  # 7 invalid regex
        "rules:\n"                     # 8
        "  - all: [place, actor]\n",   # 9 unknown group
        encoding="utf-8",
    )
    result = run_cli(["check"], {"MEDIABOT_WATCHLISTS_DIR": str(workdir / "watchlists")})
    assert result.returncode == 2
    out = result.stdout
    assert f"{wl}:2: typo: unknown key 'treshold' (did you mean 'threshold'?)" in out
    assert f"{wl}:6:" in out and "mode must be one of" in out
    assert f"{wl}:7:" in out and "invalid regular expression" in out
    assert f"{wl}:9:" in out and "no group named 'actor'" in out


def test_check_rejects_duplicate_feed_ids_and_private_urls(workdir: Path):
    (workdir / "watchlists" / "feeds.yaml").write_text(
        "feeds:\n"
        "  - {id: one, url: 'https://example.org/a', name: A, lang: de}\n"
        "  - {id: one, url: 'https://example.org/b', name: B, lang: de}\n"
        "  - {id: lan, url: 'http://192.168.1.10/feed', name: LAN, lang: de}\n",
        encoding="utf-8",
    )
    result = run_cli(["check"], {"MEDIABOT_WATCHLISTS_DIR": str(workdir / "watchlists")})
    assert result.returncode == 2
    assert "feeds.yaml:3: feeds#2: duplicate feed id 'one' (first at line 2)" in result.stdout
    assert "feeds.yaml:4:" in result.stdout and "allow_private" in result.stdout


def test_match_round_trips_the_jsonl_contract():
    items = [
        {"id": "x1", "title": "Nordkoreanische Soldaten an der Front bei Kursk",
         "summary": "Russland setzt Truppen aus Nordkorea gegen die Ukraine ein.", "lang": "de"},
        {"id": 2, "title": "Leverkusen gewinnt das Spitzenspiel"},
        {"id": "x3", "title": "Nordkoreanische Soldaten an der Front bei Kursk",
         "summary": "Russland setzt Truppen aus Nordkorea gegen die Ukraine ein.", "lang": "de",
         "source": "Other outlet"},
    ]
    stdin = "\n".join(json.dumps(i, ensure_ascii=False) for i in items) + "\n"
    result = run_cli(["match"], {"MEDIABOT_WATCHLISTS_DIR": str(ROOT / "watchlists")}, input=stdin)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["id"] for line in lines] == ["x1", 2, "x3"]
    assert "dprk-troops" in lines[0]["watchlists"]
    first = next(m for m in lines[0]["matches"] if m["watchlist"] == "dprk-troops")
    assert first["score"] > 0 and "Nordkorea" in first["terms"]
    assert lines[1]["watchlists"] == [] and lines[1]["matches"] == []
    assert lines[0]["duplicate_of"] is None
    assert lines[2]["duplicate_of"] == "x1"


def test_match_reports_bad_lines_but_keeps_going(tmp_path: Path):
    path = tmp_path / "items.jsonl"
    path.write_text('{"id": 1, "title": "Kursk"}\nnot json\n{"title": "no id"}\n{"id": 4, "title": "ok"}\n')
    result = run_cli(["match", "--items", str(path)], {"MEDIABOT_WATCHLISTS_DIR": str(ROOT / "watchlists")})
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 4
    assert lines[1]["error"] and lines[1]["line"] == 2
    assert lines[2]["error"] and lines[3]["id"] == 4
    assert "line 2" in result.stderr


def test_match_survives_lines_that_broke_it(tmp_path: Path):
    # Each of these ended the run with a traceback and lost the lines after it.
    path = tmp_path / "items.jsonl"
    path.write_bytes(b'{"id": 1, "title": "Kursk \xff Krieg"}\n'      # not UTF-8 (--items only)
                     + b"[" * 100_000 + b"\n"                           # nested too deeply for json
                     + b'{"id": "\\ud800", "title": "Kursk"}\n'        # a lone surrogate
                     + b'{"id": 4, "title": "Kursk", "summary": {"a": "Nordkorea"}}\n'  # not text
                     + b'{"id": 5, "title": "ok"}\n')
    result = run_cli(["match", "--items", str(path)], {"MEDIABOT_WATCHLISTS_DIR": str(ROOT / "watchlists")})
    assert "Traceback" not in result.stderr and "uncaught" not in result.stderr, result.stderr
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["id"] for line in lines] == [1, None, "\ud800", None, 5]
    assert lines[1]["line"] == 2 and lines[3]["line"] == 4 and "`summary`" in lines[3]["error"]


def test_match_reads_items_as_the_bot_does(tmp_path: Path):
    """`match` is how an admin checks what the bot would do: it kept teasers whole while the bot cuts them
    at 2,000 characters (a term past that matched in `match` and never alerted), read a 62 MB line for
    minutes, refused a byte-order mark and took any JSON as `id`."""
    long_teaser = "Die Lage an der Front bleibt angespannt. " * 60 + "Nordkoreanische Soldaten kämpfen bei Kursk."
    path = tmp_path / "items.jsonl"
    path.write_text("\ufeff" + json.dumps({"id": "a", "title": "Lagebericht", "summary": long_teaser}) + "\n"
                    + json.dumps({"id": "b", "title": "x", "summary": "y" * 1_100_000}) + "\n"
                    + json.dumps({"id": {"x": 1}, "title": "Kursk"}) + "\n"
                    + json.dumps({"id": 7, "title": "Nordkoreanische Soldaten kämpfen bei Kursk"}) + "\n",
                    encoding="utf-8")
    result = run_cli(["match", "--items", str(path)], {"MEDIABOT_WATCHLISTS_DIR": str(ROOT / "watchlists")})
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[0] == {**lines[0], "id": "a", "watchlists": []}  # the words past 2,000 characters: unseen
    assert lines[1]["id"] is None and "longer than 1,000,000 characters" in lines[1]["error"]
    assert lines[2]["id"] is None and "`id` must be text or a whole number" in lines[2]["error"]
    assert lines[3]["id"] == 7 and lines[3]["watchlists"]
    assert result.returncode == 1


def _dups(items: list[dict[str, object]]) -> list[object]:
    stdin = "".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items)
    result = run_cli(["match"], {"MEDIABOT_WATCHLISTS_DIR": str(ROOT / "watchlists")}, input=stdin)
    assert result.returncode == 0, result.stderr
    return [json.loads(line)["duplicate_of"] for line in result.stdout.splitlines()]


def test_match_duplicates_follow_what_the_bot_would_decide():
    story = {"title": "Nordkoreanische Soldaten an der Front bei Kursk", "lang": "de",
             "summary": "Russland setzt Truppen aus Nordkorea gegen die Ukraine ein, meldet Kiew."}
    # RSS dates count: six days apart is outside the 48-hour window (the RFC 822 date was ignored)
    assert _dups([dict(story, id="a", published="Thu, 19 Jun 2025 08:00:00 GMT"),
                  dict(story, id="b", published="Wed, 25 Jun 2025 08:00:00 GMT")]) == [None, None]
    # a record without a date counts as published with the one before it (it was dated 1970)
    assert _dups([dict(story, id="a", published="2025-06-19T08:00:00Z"), dict(story, id="b")]) == [None, "a"]
    # the same article under an edited headline: the bot drops it as seen, by its canonical link
    assert _dups([{"id": "a", "title": "Gefangene Nordkoreaner in Kiew", "link": "https://www.a.example/nk"},
                  {"id": "b", "title": "Kiew: Zwei Nordkoreaner wollen bleiben",
                   "link": "http://a.example/nk/?utm_source=tw"}]) == [None, "a"]


def test_demo_runs_offline_and_prints_alerts():
    result = run_cli(["demo"], {}, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Nordkoreanische Soldaten erstmals in Kämpfe im Gebiet Kursk verwickelt" in result.stdout
    assert "Bundesliga" not in result.stdout
    # The second outlet's copy of that story joins the alert instead of sending its own.
    assert "➕ auch: Demo-" in result.stdout and "Kiew: Erstes Gefecht mit Nordkoreanern bei Kursk" in result.stdout
    assert "20 items, 12 matched, 10 alerts printed" in result.stderr
    assert "second poll: 0 new, 0 alerts" in result.stderr


def test_python_dash_m_bot_shows_help():
    result = run_cli(["--help"], {})
    assert result.returncode == 0
    for command in ("run", "poll", "check", "match", "demo"):
        assert command in result.stdout


def test_poll_once_lists_feeds_it_left_out_while_they_back_off(workdir: Path, feed_server: FeedServer):
    """Cron mode prints only what it did: a feed in backoff vanished from the output after one run."""
    write_feeds_yaml(workdir / "watchlists", [{"id": "broken", "url": feed_server.url("/broken.xml")},
                                              {"id": "ok", "url": feed_server.url("/ok.xml")}])
    feed_server.routes["/broken.xml"] = Route(status=500)
    feed_server.routes["/ok.xml"] = Route(rss([]))
    env = {"MEDIABOT_WATCHLISTS_DIR": str(workdir / "watchlists"), "MEDIABOT_STATE_DIR": str(workdir / "state")}
    first = run_cli(["poll", "--once"], env)
    assert first.returncode == 0 and "failed: broken: HTTP 500" in first.stderr
    second = run_cli(["poll", "--once"], env)
    assert second.returncode == 0, second.stderr
    assert "polled 1 feeds" in second.stderr
    assert "1 feeds not polled" in second.stderr
    assert "waiting: broken: HTTP 500 (1× in a row, next try " in second.stderr


def test_a_mistyped_command_line_exits_1_not_the_config_code_2():
    for args in (["frobnicate"], ["poll"], ["backtest"], ["match", "--nope"]):
        result = run_cli(args, {"MEDIABOT_WATCHLISTS_DIR": str(ROOT / "watchlists")})
        assert result.returncode == 1, (args, result.stderr)
        assert "usage: mediabot" in result.stderr


def test_a_cron_run_with_a_broken_edit_serves_the_last_good_config_and_tells_the_admins_once(
        workdir: Path, feed_server: FeedServer, telegram: TelegramStub):
    """One typo in any watchlist stopped every poll and every delivery of the cron job, and the admins heard
    nothing in Telegram: the daemon keeps its last good config, a cron run had none to keep."""
    admin, channel = 777, -1001234567890
    wdir = workdir / "watchlists"
    write_feeds_yaml(wdir, [{"id": "news", "url": feed_server.url("/news.xml"), "name": "News", "lang": "de"}])
    troops = wdir / "dprk-troops.yaml"
    troops.write_text(troops.read_text(encoding="utf-8") + f"\nchats: [{channel}]\n", encoding="utf-8")
    feed_server.routes["/news.xml"] = Route(rss([]))
    env = {"MEDIABOT_WATCHLISTS_DIR": str(wdir), "MEDIABOT_STATE_DIR": str(workdir / "state"),
           "TELEGRAM_BOT_TOKEN": TelegramStub.TOKEN, "TELEGRAM_API_BASE_URL": telegram.base_url,
           "MEDIABOT_ADMINS": str(admin)}
    assert run_cli(["poll", "--once"], env).returncode == 0  # the good config is kept
    kursk = wdir / "kursk-front.yaml"
    kursk.write_text(kursk.read_text(encoding="utf-8").replace("threshold:", "treshold:", 1), encoding="utf-8")
    feed_server.routes["/news.xml"] = Route(rss([{"title": "Nordkoreanische Soldaten kämpfen im Gebiet Kursk",
                                                  "link": "https://n.example/a", "guid": "a", "ago": 5}]))
    broken = run_cli(["poll", "--once"], env)
    assert broken.returncode == 2  # the cron job shows red until the YAML is fixed
    assert f"{kursk}:" in broken.stderr and "unknown key 'treshold'" in broken.stderr
    assert "serving the last good config" in broken.stderr
    assert any("Soldaten" in m.text for m in telegram.sent_to(channel))  # the alert still went out
    [notice] = telegram.sent_to(admin)
    assert "Config rejected" in notice.text and "treshold" in notice.text
    assert run_cli(["poll", "--once"], env).returncode == 2 and len(telegram.sent_to(admin)) == 1  # told once
    kursk.write_text(kursk.read_text(encoding="utf-8").replace("treshold:", "threshold:", 1), encoding="utf-8")
    assert run_cli(["poll", "--once"], env).returncode == 0
    assert "Config accepted" in telegram.sent_to(admin)[-1].text


def test_a_broken_edit_never_becomes_the_kept_good_config(workdir: Path):
    """The copy was made by reading the files again after they loaded: an edit saved in between (broken)
    became the "good" copy, and the next start had nothing to fall back on."""
    from bot.config import config_signature, load_good_copy, save_good_copy

    wdir, state = workdir / "watchlists", workdir / "state"
    write_feeds_yaml(wdir, [{"id": "n", "url": "https://n.example/feed.xml"}])
    loaded = config_signature(wdir)  # the files as they were read
    save_good_copy(wdir, state, loaded)
    kursk = wdir / "kursk-front.yaml"
    kursk.write_text(kursk.read_text(encoding="utf-8") + "colour: red\n", encoding="utf-8")
    save_good_copy(wdir, state, loaded)  # loaded a moment before the broken save
    good = load_good_copy(state)
    assert good is not None and "kursk-front" in good[0].watchlist_names()
