"""Real loopback servers for tests: a scriptable feed server and a stand-in of the Telegram Bot API.

Both bind to 127.0.0.1 on a free port, run in a background thread and are stopped by the fixture
that started them. The Telegram stand-in answers like Telegram does (the `{"ok": ...}` envelope,
400/403/429 with `parameters`, HTML entity validation, the 4096-character limit) and records
every call, so tests assert on what a subscriber would actually receive.
"""

from __future__ import annotations

import email.utils
import html
import html.parser
import json
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

# --------------------------------------------------------------------------- feed server


@dataclass
class Route:
    """What the feed server answers for one path. `handler` overrides everything else."""

    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    handler: Callable[[BaseHTTPRequestHandler], None] | None = None


class _QuietServer(ThreadingHTTPServer):
    """A client killed mid-request (the crash tests) is expected: no traceback on stderr for it."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class FeedServer:
    """Serves feed documents per path; counts requests; supports ETag/304."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.sent: dict[str, int] = {}  # body bytes written per path by the streaming handlers
        self.stopping = threading.Event()  # streaming handlers end when the server stops
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                with server._lock:
                    server.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                    route = server.routes.get(path)
                if route is None:
                    self._send(404, b"not found", {"Content-Type": "text/plain"})
                    return
                if route.handler is not None:
                    route.handler(self)
                    return
                if route.etag and self.headers.get("If-None-Match") == route.etag:
                    self._send(304, b"", {"ETag": route.etag})
                    return
                headers = {"Content-Type": "application/rss+xml; charset=utf-8", **route.headers}
                if route.etag:
                    headers["ETag"] = route.etag
                self._send(route.status, route.body, headers)

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if status != 304:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if status != 304:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def start(self) -> FeedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def hits(self, path: str) -> int:
        with self._lock:
            return sum(1 for p, _ in self.requests if p.split("?")[0] == path)

    def headers_of(self, path: str) -> list[dict[str, str]]:
        """The request headers of every request to `path`, oldest first."""
        with self._lock:
            return [h for p, h in self.requests if p.split("?")[0] == path]

    # Route handlers for hostile behaviour. Each writes the response itself and ends when the
    # client goes away or the server stops, so no thread outlives the test.

    def redirect(self, path: str, to: str, status: int = 301) -> None:
        """`path` answers a redirect to `to` (a path on this server or any URL)."""
        self.routes[path] = Route(status=status, headers={"Location": to})

    def stream(self, path: str, chunks: Callable[[], Iterator[bytes]], *, delay: float = 0.0,
               headers: dict[str, str] | None = None, status: int = 200) -> None:
        """`path` answers with the chunks (no Content-Length: close-delimited), `delay` s apart."""

        def handler(h: BaseHTTPRequestHandler) -> None:
            h.protocol_version = "HTTP/1.0"  # close-delimited body: the client cannot know its size
            h.close_connection = True
            h.send_response(status)
            for k, v in {"Content-Type": "application/rss+xml", **(headers or {})}.items():
                h.send_header(k, v)
            h.end_headers()
            try:
                for chunk in chunks():
                    if self.stopping.is_set():
                        return
                    h.wfile.write(chunk)
                    h.wfile.flush()
                    with self._lock:
                        self.sent[path] = self.sent.get(path, 0) + len(chunk)
                    if delay and self.stopping.wait(delay):
                        return
            except OSError:  # the client hung up: that is the point of these tests
                return

        self.routes[path] = Route(handler=handler)


def rss(items: list[dict[str, Any]], title: str = "Test feed") -> bytes:
    """A small RSS 2.0 document; each item dict has title, link, guid, description, ago (minutes), or
    pubDate (the element's text as given, for dates that must not move between documents)."""
    now = datetime.now(UTC)
    parts = [f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>{html.escape(title)}</title>'
             "<link>https://example.org/</link><description>test</description>"]
    for it in items:
        parts.append("<item>")
        parts.append(f"<title>{html.escape(it['title'])}</title>")
        if it.get("link"):
            parts.append(f"<link>{html.escape(it['link'])}</link>")
        if it.get("guid"):
            parts.append(f'<guid isPermaLink="false">{html.escape(it["guid"])}</guid>')
        if it.get("description"):
            parts.append(f"<description>{html.escape(it['description'])}</description>")
        if it.get("pubDate"):
            parts.append(f"<pubDate>{html.escape(it['pubDate'])}</pubDate>")
        elif it.get("ago") is not None:
            when = now - timedelta(minutes=float(it["ago"]))
            parts.append(f"<pubDate>{email.utils.format_datetime(when)}</pubDate>")
        parts.append("</item>")
    parts.append("</channel></rss>")
    return "".join(parts).encode("utf-8")


# --------------------------------------------------------------------------- Telegram stand-in

_ALLOWED_TAGS = {
    "b": (), "strong": (), "i": (), "em": (), "u": (), "ins": (), "s": (), "strike": (), "del": (),
    "a": ("href",), "code": ("class",), "pre": (), "tg-spoiler": (), "span": ("class",),
    "blockquote": ("expandable",), "tg-emoji": ("emoji-id",),
}


class _EntityChecker(html.parser.HTMLParser):
    """Validates Telegram's HTML subset; collects the visible text length."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.error: str | None = None
        self.stack: list[str] = []
        self.text_len = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _ALLOWED_TAGS:
            self.error = self.error or f"Unsupported start tag \"{tag}\""
            return
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.error = self.error or f"Unexpected end tag \"{tag}\""
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text_len += len(data)


def check_telegram_html(text: str) -> str | None:
    """None when Telegram would accept `text` in HTML mode, else its error description."""
    # A bare '<' that does not open a tag, or '&' that is not an entity, is rejected by Telegram.
    i = 0
    while True:
        i = text.find("&", i)
        if i < 0:
            break
        semi = text.find(";", i)
        entity = text[i : semi + 1] if semi > 0 else ""
        if not entity or html.unescape(entity) == entity or len(entity) > 12:
            return f"Bad Request: can't parse entities: unsupported entity at byte offset {i}"
        i += 1
    for pos, ch in enumerate(text):
        if ch == "<" and not (text[pos + 1 : pos + 2].isalpha() or text[pos + 1 : pos + 2] == "/"):
            return f"Bad Request: can't parse entities: unexpected character '<' at byte offset {pos}"
    parser = _EntityChecker()
    parser.feed(text)
    parser.close()
    if parser.error:
        return f"Bad Request: can't parse entities: {parser.error}"
    if parser.stack:
        tag = parser.stack[-1]
        return f"Bad Request: can't parse entities: can't find end tag corresponding to start tag \"{tag}\""
    if parser.text_len > 4096:
        return "Bad Request: message is too long"
    return None


def telegram_url_problem(url: str, refuse: str | None = None) -> str | None:
    """Why Telegram would refuse `url` as a button's URL or a link's href (as reported: a space or other
    unencoded character, a host without a dot, a scheme other than http, https or tg), else None.
    `refuse`: also refuse a URL that contains this text (a rule of Telegram's no local check knows)."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1].split(":", 1)[0] if not rest.startswith("[") else "[v6]"
    if scheme.lower() not in ("http", "https", "tg"):
        return "Unsupported URL protocol"
    if any(c.isspace() or not c.isprintable() or c in '"<>\\^`{|}' for c in url):
        return "Wrong HTTP URL"
    if scheme.lower() != "tg" and "." not in host and host != "[v6]":
        return "Wrong HTTP URL"
    if refuse and refuse in url:
        return "Wrong HTTP URL"
    return None


@dataclass
class SentMessage:
    chat_id: int
    text: str
    parse_mode: str | None
    message_id: int
    at: float
    reply_markup: Any = None
    method: str = "sendMessage"
    thread: int | None = None  # message_thread_id: a forum's topic (None: General)

    def buttons(self) -> list[dict[str, Any]]:
        """The message's inline buttons, row after row."""
        return [b for row in (self.reply_markup or {}).get("inline_keyboard") or [] for b in row]


class TelegramStub:
    """A loopback stand-in of the Bot API reached through python-telegram-bot's `base_url`."""

    TOKEN = "123456:loopback-stand-in-not-a-token"

    def __init__(self, *, enforce_limits: bool = False) -> None:
        self.enforce_limits = enforce_limits
        self.messages: list[SentMessage] = []  # accepted sendMessage / editMessageText
        self.calls: list[tuple[str, dict[str, Any], float]] = []
        self.rejections: list[tuple[str, int, str, float]] = []  # (method, chat, description, time)
        self.forbidden: set[int] = set()
        self.drop_answers = 0  # the next N sendMessage calls are taken, then the connection drops unanswered
        self.stale_callbacks = False  # answerCallbackQuery refused as too late (a press made while the bot was down)
        self.deleted_topics: set[int] = set()  # forum topics deleted: posting there is "thread not found"
        self.refused: dict[int, tuple[int, str]] = {}  # chat -> (status, description) Telegram answers it with
        self.migrated: dict[int, int] = {}
        self.retry_after: dict[int, int] = {}  # chat -> seconds, one 429 then cleared
        self.blocked_until: dict[int, float] = {}
        self.updates: list[dict[str, Any]] = []
        self.chat_admins: dict[int, set[int]] = {}
        self.commands: dict[str, list[dict[str, Any]]] = {}
        self.too_many = 0
        self.callback_answers: list[str] = []
        self.on_accept: Callable[[SentMessage], None] | None = None  # runs after a message is recorded
        self.delay = 0.0
        self.deleted: set[int] = set()  # message ids a user deleted: editMessageText answers "not found"
        self.flood_getme = 0  # the next N getMe calls answered 429 (flood control), retry_after 1
        self.conflict = False  # getUpdates answered 409, as when another process polls with the token
        self.reject_token = False  # every call answered 401 Unauthorized, as for a revoked token
        self.unavailable = 0  # the next N calls are answered 502 Bad Gateway (an outage)
        self.refuse_urls_with: str | None = None  # a link Telegram refuses for a rule of its own (test only)
        self._next_message = 1000
        self._next_update = 1
        self._log: list[float] = []
        self._chat_log: dict[int, list[float]] = {}
        self._lock = threading.Lock()
        self._updates_cond = threading.Condition(self._lock)
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out in two writes; with Nagle + delayed ACK each reply would lag ~40 ms
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                self._handle()

            def do_GET(self) -> None:
                self._handle()

            def _handle(self) -> None:
                path = urlsplit(self.path).path
                parts = path.strip("/").split("/")
                if len(parts) != 2 or parts[0] != "bot" + stub.TOKEN:
                    self._reply(404, {"ok": False, "error_code": 404, "description": "Not Found"})
                    return
                if stub.reject_token or stub.unavailable > 0:
                    with stub._lock:
                        stub.calls.append((parts[1], {}, time.monotonic()))
                if stub.reject_token:
                    self._reply(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
                    return
                with stub._lock:
                    down = stub.unavailable > 0
                    stub.unavailable -= down
                if down:  # (the request is read first: left unread, it would be taken for the next one)
                    self.rfile.read(int(self.headers.get("Content-Length") or 0))
                    self._reply(502, {"ok": False, "error_code": 502, "description": "Bad Gateway"})
                    return
                method = parts[1]
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                params = _decode_params(raw, self.headers.get("Content-Type", ""), self.path)
                status, payload = stub.dispatch(method, params)
                if method == "sendMessage" and status == 200 and stub.drop_answers > 0:
                    with stub._lock:
                        stub.drop_answers -= 1
                    self.close_connection = True  # taken, but the answer is lost on the way back
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self._reply(status, payload)

            def _reply(self, status: int, payload: dict[str, Any]) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        """What goes into TELEGRAM_API_BASE_URL."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/bot"

    def start(self) -> TelegramStub:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._updates_cond:
            self._updates_cond.notify_all()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- scripting -------------------------------------------------------------------------

    def push_update(self, update: dict[str, Any]) -> None:
        """Queue an update for getUpdates (a user's message or button press)."""
        with self._updates_cond:
            update = {"update_id": self._next_update, **update}
            self._next_update += 1
            self.updates.append(update)
            self._updates_cond.notify_all()

    def user_message(self, text: str, *, chat_id: int = 1001, user_id: int | None = None,
                     chat_type: str = "private", lang: str = "de", title: str = "",
                     on_behalf_of_chat: bool = False, topic: int | None = None) -> None:
        """Queue a text message from a user, as Telegram would deliver it. `on_behalf_of_chat`: an anonymous
        group admin's message (from GroupAnonymousBot, sender_chat the group itself)."""
        user_id = user_id if user_id is not None else chat_id
        chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            chat["first_name"] = "Test"
        else:
            chat["title"] = title or "Newsroom"
        entities = []
        if text.startswith("/"):
            entities = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        message: dict[str, Any] = {
            "message_id": self._next_message, "date": int(time.time()), "chat": chat, "text": text,
            "from": {"id": user_id, "is_bot": False, "first_name": "Test", "language_code": lang},
            "entities": entities,
        }
        if on_behalf_of_chat:
            message["from"] = {"id": 1087968824, "is_bot": True, "first_name": "Group", "username": "GroupAnonymousBot"}
            message["sender_chat"] = dict(chat)
        if topic is not None:  # a forum supergroup; 0: its General topic
            chat["is_forum"] = True
            if topic:
                message.update({"message_thread_id": topic, "is_topic_message": True})
        self.push_update({"message": message})

    def bot_membership(self, chat_id: int, old: str, new: str, *, chat_type: str = "supergroup",
                       rights: dict[str, bool] | None = None) -> None:
        """Queue the my_chat_member update Telegram sends when the bot is added to a chat, removed, restricted
        or promoted (`old`/`new`: member, administrator, left, kicked, restricted; `rights` for the new one)."""
        chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
        chat.update({"first_name": "Test"} if chat_type == "private" else {"title": "Newsroom"})
        me = {"id": 42, "is_bot": True, "first_name": "mediabot", "username": "mediabot_test_bot"}

        def member(status: str, extra: dict[str, Any]) -> dict[str, Any]:
            body: dict[str, Any] = {"status": status, "user": me}
            if status == "administrator":
                body.update({"can_be_edited": False, "is_anonymous": False, "can_manage_chat": True,
                             "can_delete_messages": True, "can_manage_video_chats": True,
                             "can_restrict_members": True, "can_promote_members": False, "can_change_info": True,
                             "can_invite_users": True, "can_post_stories": False, "can_edit_stories": False,
                             "can_delete_stories": False})
            if status == "restricted":
                body.update({"is_member": True, "can_send_messages": False, "until_date": 0})
            if status == "kicked":
                body["until_date"] = 0
            return {**body, **extra}

        self.push_update({"my_chat_member": {
            "chat": chat, "from": {"id": 55, "is_bot": False, "first_name": "Admin"}, "date": int(time.time()),
            "old_chat_member": member(old, {}), "new_chat_member": member(new, rights or {}),
        }})

    def button_press(self, data: str, *, chat_id: int = 1001, user_id: int | None = None,
                     message_id: int = 1, lang: str = "de", chat_type: str = "") -> None:
        """Queue a callback query (an inline button pressed). Under a channel's post the message is the
        channel's own (sender_chat is the channel), whoever presses."""
        user_id = user_id if user_id is not None else chat_id
        chat = {"id": chat_id, "type": chat_type or ("private" if chat_id > 0 else "supergroup")}
        message: dict[str, Any] = {"message_id": message_id, "date": int(time.time()), "chat": chat, "text": "x"}
        if chat["type"] == "channel":
            chat["title"] = "Channel"
            message["sender_chat"] = dict(chat)
        self.push_update({"callback_query": {
            "id": str(self._next_update), "chat_instance": "1", "data": data,
            "from": {"id": user_id, "is_bot": False, "first_name": "Test", "language_code": lang},
            "message": message,
        }})

    def sent_to(self, chat_id: int) -> list[SentMessage]:
        with self._lock:
            return [m for m in self.messages if m.chat_id == chat_id and m.method == "sendMessage"]

    def texts(self, chat_id: int) -> list[str]:
        return [m.text for m in self.sent_to(chat_id)]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return predicate()

    # -- the API ---------------------------------------------------------------------------

    def dispatch(self, method: str, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        now = time.monotonic()
        with self._lock:
            self.calls.append((method, p, now))
        if self.delay:
            time.sleep(self.delay)
        if method == "getMe" and self.flood_getme > 0:
            self.flood_getme -= 1
            return 429, {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 1",
                         "parameters": {"retry_after": 1}}
        if method == "getMe":
            return 200, {"ok": True, "result": {"id": 42, "is_bot": True, "first_name": "mediabot",
                                                 "username": "mediabot_test_bot", "can_join_groups": True,
                                                 "can_read_all_group_messages": False,
                                                 "supports_inline_queries": False}}
        if method in ("deleteWebhook", "setMyCommands", "answerCallbackQuery", "setMyDescription",
                      "deleteMyCommands", "editMessageReplyMarkup"):
            if method == "answerCallbackQuery" and self.stale_callbacks:
                return 400, {"ok": False, "error_code": 400, "description": "Bad Request: query is too old and "
                             "response timeout expired or query ID is invalid"}
            if method == "answerCallbackQuery":
                with self._lock:
                    self.callback_answers.append(str(p.get("text") or ""))
            if method == "setMyCommands":
                with self._lock:
                    self.commands[str(p.get("language_code") or "")] = _as_json(p.get("commands")) or []
            return 200, {"ok": True, "result": True}
        if method == "getUpdates":
            if self.conflict:
                time.sleep(0.05)
                return 409, {"ok": False, "error_code": 409, "description": "Conflict: terminated by other "
                             "getUpdates request; make sure that only one bot instance is running"}
            return 200, {"ok": True, "result": self._get_updates(p)}
        if method == "getChatMember":
            chat, user = int(p["chat_id"]), int(p["user_id"])
            status = "administrator" if user in self.chat_admins.get(chat, set()) else "member"
            return 200, {"ok": True, "result": {"status": status, "user": {"id": user, "is_bot": False,
                                                                             "first_name": "U"},
                                                 "can_be_edited": False, "can_manage_chat": True,
                                                 "can_change_info": True, "can_delete_messages": True,
                                                 "can_invite_users": True, "can_restrict_members": True,
                                                 "can_pin_messages": True, "can_promote_members": False,
                                                 "can_manage_video_chats": True, "is_anonymous": False,
                                                 "can_post_stories": False, "can_edit_stories": False,
                                                 "can_delete_stories": False}}
        if method == "getChat":
            chat = int(p["chat_id"])
            return 200, {"ok": True, "result": {"id": chat, "type": "private" if chat > 0 else "supergroup"}}
        if method in ("sendMessage", "editMessageText"):
            return self._send(method, p, now)
        return 400, {"ok": False, "error_code": 400, "description": f"Bad Request: method {method} not in stand-in"}

    def _reject(self, method: str, chat: int, status: int, description: str, now: float,
                parameters: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.rejections.append((method, chat, description, now))
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if parameters:
            body["parameters"] = parameters
        return status, body

    def _send(self, method: str, p: dict[str, Any], now: float) -> tuple[int, dict[str, Any]]:
        chat = int(p.get("chat_id", 0))
        text = str(p.get("text", ""))
        if chat in self.forbidden:
            return self._reject(method, chat, 403, "Forbidden: bot was blocked by the user", now)
        if chat in self.refused:
            return self._reject(method, chat, *self.refused[chat], now)
        if p.get("message_thread_id") and int(p["message_thread_id"]) in self.deleted_topics:
            return self._reject(method, chat, 400, "Bad Request: message thread not found", now)
        if chat in self.migrated:
            return self._reject(method, chat, 400, "Bad Request: group chat was upgraded to a supergroup chat", now,
                                {"migrate_to_chat_id": self.migrated[chat]})
        with self._lock:
            until = self.blocked_until.get(chat)
            if until is not None and now < until:
                self.too_many += 1
                early = True
            else:
                early = False
        if early:
            # A retry before retry_after has passed: Telegram answers 429 again; we count it.
            return self._reject(method, chat, 429, "Too Many Requests: retry after 1", now, {"retry_after": 1})
        if chat in self.retry_after:
            seconds = self.retry_after.pop(chat)
            with self._lock:
                self.blocked_until[chat] = now + seconds
                self.too_many += 1
            return self._reject(method, chat, 429, f"Too Many Requests: retry after {seconds}", now,
                                {"retry_after": seconds})
        if self.enforce_limits:
            with self._lock:
                self._log = [t for t in self._log if now - t < 1.0]
                log = self._chat_log.setdefault(chat, [])
                log[:] = [t for t in log if now - t < 60.0]
                over_global = len(self._log) >= 30
                over_chat = bool(log) and now - log[-1] < 0.9 if chat > 0 else (
                    len(log) >= 20 or (bool(log) and now - log[-1] < 0.9))
                if over_global or over_chat:
                    self.too_many += 1
                    self.blocked_until[chat] = now + 1
                else:
                    self._log.append(now)
                    log.append(now)
            if over_global or over_chat:
                return self._reject(method, chat, 429, "Too Many Requests: retry after 1", now, {"retry_after": 1})
        if method == "editMessageText" and int(p.get("message_id", 0)) in self.deleted:
            return self._reject(method, chat, 400, "Bad Request: message to edit not found", now)
        if not text:
            return self._reject(method, chat, 400, "Bad Request: message text is empty", now)
        markup = _as_json(p.get("reply_markup")) or {}
        for row in markup.get("inline_keyboard") or []:
            for button in row:
                if "url" in button and (why := telegram_url_problem(button["url"], self.refuse_urls_with)):
                    return self._reject(method, chat, 400, f"Bad Request: inline keyboard button URL "
                                        f"'{button['url']}' is invalid: {why}", now)
        if p.get("parse_mode") == "HTML":
            problem = check_telegram_html(text)
            for href in re.findall(r'<a href="([^"]*)"', text):
                if not problem and (why := telegram_url_problem(html.unescape(href), self.refuse_urls_with)):
                    problem = f"Bad Request: entity URL '{html.unescape(href)}' is invalid: {why}"
            if problem:
                return self._reject(method, chat, 400, problem, now)
        elif len(text) > 4096:
            return self._reject(method, chat, 400, "Bad Request: message is too long", now)
        with self._lock:
            if method == "editMessageText":
                message_id = int(p.get("message_id", 0))
            else:
                self._next_message += 1
                message_id = self._next_message
            thread = int(p["message_thread_id"]) if p.get("message_thread_id") else None
            accepted = SentMessage(chat, text, p.get("parse_mode"), message_id, now,
                                   _as_json(p.get("reply_markup")), method, thread)
            self.messages.append(accepted)
        if self.on_accept is not None:
            self.on_accept(accepted)
        if method == "editMessageText":
            result: Any = {"message_id": message_id, "date": int(time.time()), "text": text,
                           "chat": {"id": chat, "type": "private" if chat > 0 else "supergroup"}}
        else:
            result = {"message_id": message_id, "date": int(time.time()), "text": text,
                      "chat": {"id": chat, "type": "private" if chat > 0 else "supergroup"}}
        return 200, {"ok": True, "result": result}

    def _get_updates(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(p.get("offset") or 0)
        timeout = min(float(p.get("timeout") or 0), 1.0)
        with self._updates_cond:
            if offset:
                self.updates = [u for u in self.updates if u["update_id"] >= offset]
            if not self.updates and timeout:
                self._updates_cond.wait(timeout)
            return list(self.updates)


def _as_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _decode_params(raw: bytes, content_type: str, path: str) -> dict[str, Any]:
    params: dict[str, Any] = dict(parse_qsl(urlsplit(path).query))
    if not raw:
        return params
    if "json" in content_type:
        data = json.loads(raw)
        params.update(data if isinstance(data, dict) else {})
    elif "multipart/form-data" in content_type:
        boundary = content_type.split("boundary=")[-1].strip('"').encode()
        for part in raw.split(b"--" + boundary):
            head, _, body = part.partition(b"\r\n\r\n")
            if b'name="' not in head:
                continue
            name = head.split(b'name="')[1].split(b'"')[0].decode()
            params[name] = body.rstrip(b"\r\n").decode("utf-8", errors="replace")
    else:
        params.update(dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True)))
    return params
