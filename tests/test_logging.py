"""Logs: one JSON object per line when not a terminal, readable text when asked, and never the token,
even at DEBUG with python-telegram-bot and httpx logging their requests."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from bot.log import setup_logging
from tests.conftest import run_cli, write_feeds_yaml
from tests.servers import Route, TelegramStub, rss
from tests.test_e2e import MATCHING

TOKEN = TelegramStub.TOKEN


@pytest.fixture
def stream(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """A buffer for setup_logging(stream=...); the root logger, levels, record factory and excepthook
    are restored afterwards."""
    buf = io.StringIO()
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    factory = logging.getLogRecordFactory()
    root = logging.getLogger()
    saved = (root.level, {n: logging.getLogger(n).level for n in ("httpx", "httpcore", "telegram", "hpack")})
    try:
        yield buf
    finally:
        for h in [h for h in root.handlers if getattr(h, "_mediabot", False)]:
            root.removeHandler(h)
        root.setLevel(saved[0])
        logging.setLogRecordFactory(factory)
        for name, level in saved[1].items():
            logging.getLogger(name).setLevel(level)


def _lines(buf: io.StringIO) -> list[dict[str, str]]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line]


def test_json_lines_one_object_per_event_even_for_tracebacks(stream):
    setup_logging("INFO", [TOKEN], json_lines=True, stream=stream)
    log = logging.getLogger("bot.test")
    log.info("poll done feed=%s status=%s", "news", "ok")
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        log.exception("cycle crashed")
    log.debug("not shown at INFO")
    records = _lines(stream)
    assert [r["msg"] for r in records] == ["poll done feed=news status=ok", "cycle crashed"]
    assert records[0]["level"] == "info" and records[0]["logger"] == "bot.test"
    assert "RuntimeError: boom" in records[1]["exc"]


def test_text_format_when_asked_is_readable(stream):
    setup_logging("WARNING", [TOKEN], json_lines=False, stream=stream)
    logging.getLogger("bot.test").warning("feed slow feed=%s", "news")
    line = stream.getvalue().strip()
    assert line.endswith("WARNING bot.test: feed slow feed=news")
    assert not line.startswith("{")


def test_token_is_redacted_from_messages_arguments_tracebacks_and_stacks(stream):
    setup_logging("DEBUG", [TOKEN], json_lines=True, stream=stream)
    log = logging.getLogger("bot.test")
    url = f"https://api.telegram.org/bot{TOKEN}/sendMessage"
    log.debug("request %s", url)
    log.debug(f"inline {url}", stack_info=True)
    try:
        raise ConnectionError(f"cannot reach {url}")
    except ConnectionError:
        log.exception("send failed")
    other = "987654321:" + "B" * 35  # shaped like any bot token
    log.warning("foreign token %s", other)
    out = stream.getvalue()
    assert TOKEN not in out and other not in out
    assert out.count("[REDACTED]") >= 4
    assert all(isinstance(r, dict) for r in _lines(stream))


def test_a_log_call_with_a_bad_format_string_never_prints_the_token(stream, capsys, monkeypatch):
    """A mistyped log call (two %s, one argument) made logging print its own report with the arguments as
    they were, the token in a URL among them, to stderr. Now it is one redacted line like any other, and
    an uncaught exception in a thread goes through the log too."""
    import threading

    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    setup_logging("INFO", [TOKEN], json_lines=True, stream=stream)
    url = f"https://api.telegram.org/bot{TOKEN}/getMe"
    logging.getLogger("bot.test").info("calling %s %s", url)
    worker = threading.Thread(target=lambda: (_ for _ in ()).throw(ConnectionError(f"cannot reach {url}")))
    worker.start()
    worker.join()
    printed = capsys.readouterr()
    out = stream.getvalue()
    assert TOKEN not in out + printed.err + printed.out
    [bad, thread] = _lines(stream)
    assert "bad format string" in bad["msg"] and "[REDACTED]" in bad["msg"]
    assert "uncaught exception in thread" in thread["msg"] and "cannot reach" in out


def test_settings_do_not_show_the_token_in_their_repr():
    from bot.config import load_settings

    settings = load_settings({"TELEGRAM_BOT_TOKEN": TOKEN})
    assert settings.token == TOKEN and TOKEN not in repr(settings)


async def test_ptb_and_httpx_debug_records_never_carry_the_token(stream, telegram, caplog):
    """Force the library loggers to DEBUG (the bot holds them at WARNING) and make real requests; not
    even another handler (here pytest's caplog) sees the token, as records are scrubbed when made."""
    from telegram import Bot

    setup_logging("DEBUG", [TOKEN], json_lines=True, stream=stream)
    for name in ("httpx", "httpcore", "telegram"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    bot = Bot(TOKEN, base_url=telegram.base_url)
    async with bot:
        await bot.get_me()
        await bot.send_message(chat_id=1, text="hello")
    out = stream.getvalue()
    assert "HTTP Request: POST" in out  # httpx did log its request lines (URL with the token)
    assert TOKEN not in out
    assert TOKEN.split(":", 1)[1] not in out
    assert "HTTP Request: POST" in caplog.text and TOKEN not in caplog.text


def test_poll_once_at_debug_never_logs_the_token(workdir, feed_server, telegram):
    """`python -m bot poll --once` with MEDIABOT_LOG_LEVEL=DEBUG against the Bot API stand-in."""
    wl = workdir / "watchlists" / "dprk-troops.yaml"
    wl.write_text(wl.read_text(encoding="utf-8") + "\nchats: [-1001234567890]\n", encoding="utf-8")
    write_feeds_yaml(workdir / "watchlists", [{"id": "news", "url": feed_server.url("/news.xml"),
                                               "name": "Example News", "lang": "de"}])
    feed_server.routes["/news.xml"] = Route(rss([MATCHING]))
    telegram.forbidden.add(-1001234567890)  # an error path too: Forbidden carries request context
    env = {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE_URL": telegram.base_url,
           "MEDIABOT_WATCHLISTS_DIR": str(workdir / "watchlists"), "MEDIABOT_STATE_DIR": str(workdir / "state"),
           "MEDIABOT_LOG_LEVEL": "DEBUG"}
    result = run_cli(["poll", "--once"], env)
    assert result.returncode == 0, result.stderr
    assert any(c[0] == "sendMessage" for c in telegram.calls)  # the token was really used
    assert TOKEN not in result.stderr and TOKEN not in result.stdout
    assert TOKEN.split(":", 1)[1] not in result.stderr
    logs = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert any(r["level"] == "debug" for r in logs)  # DEBUG really was on
    assert any("chat unavailable" in r["msg"] for r in logs)


def test_credentials_in_feed_urls_are_redacted(stream):
    """Agency feeds carry basic-auth users or API keys in their URLs, and feed URLs appear in log lines."""
    setup_logging("INFO", [TOKEN], json_lines=True, stream=stream)
    logging.getLogger("bot.pipeline").info("feed URL changed in feeds.yaml feed=%s url=%s", "a",
                                           "https://agency:S3cretPass@feeds.example/a?apikey=K3YSECRET2&lang=de")
    [record] = _lines(stream)
    assert "S3cretPass" not in record["msg"] and "K3YSECRET2" not in record["msg"]
    assert record["msg"].endswith("url=https://[REDACTED]@feeds.example/a?apikey=[REDACTED]&lang=de")


def test_an_error_page_from_telegram_is_one_warning_not_an_error_with_a_traceback(stream):
    """A proxy in front of the Bot API answering 502 with HTML: PTB logged ERROR and a JSONDecodeError
    traceback on every retry, which pages on-call for a condition the bot rides out."""
    setup_logging("INFO", [TOKEN], json_lines=True, stream=stream)
    try:
        json.loads("<html><head><title>502 Bad Gateway</title></head></html>")
    except ValueError:
        logging.getLogger("telegram.request.BaseRequest").exception(
            'Can not load invalid JSON data: "%s"', "<html><head><title>502 Bad Gateway</title>")
    [record] = _lines(stream)
    assert record["level"] == "warning" and "exc" not in record and "not JSON" in record["msg"]
