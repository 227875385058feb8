"""python-telegram-bot Application: subscriber and admin commands (long polling).

Handlers only translate between Telegram and the store; decisions (durations, quiet hours, digests)
live in `bot.subscribers`. Replies go out directly (a person is waiting); alerts go through the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import html
import logging
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from telegram import BotCommand, ChatMember, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ChatMemberStatus, ParseMode
from telegram.error import BadRequest, TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.alerts import MAX_MESSAGE, safe_url
from bot.config import is_chat_id
from bot.deliver import HoldRouter
from bot.errors import StoreUnavailableError, TokenRejectedError
from bot.subscribers import ChatPrefs, parse_digest, parse_mute, parse_quiet
from bot.text import shorten

if TYPE_CHECKING:
    from bot.app import Runtime

logger = logging.getLogger(__name__)

Handler = Callable[[Update, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, None]]
START_RETRY_LONGEST = 300.0  # s: the longest wait between tries to reach Telegram at start
WATCHLIST_MUTE = timedelta(hours=24)  # the alert's "mute watchlist 24 h" button

_T: dict[str, dict[str, str]] = {
    "de": {
        "welcome": "Willkommen beim Medien-Monitor. Ich melde neue Berichte zu diesen Watchlists — "
                   "tippen Sie auf eine, um sie zu abonnieren. /help zeigt alle Befehle.",
        "help": "/list – Watchlists und Abos\n/subscribe &lt;id&gt; – abonnieren\n"
                "/unsubscribe &lt;id|all&gt; – abbestellen\n"
                "/mute 2h – stumm schalten (auch 30m, 1d, 1w; eine Zahl allein: Stunden)\n"
                "/unmute – wieder laut, mit Zusammenfassung\n/recent &lt;id&gt; – die letzten 10 Treffer\n"
                "/quiet 22:00-07:00 – Ruhezeiten (off zum Abschalten)\n"
                "/digest off|hourly|daily 08:00 – Meldungen gesammelt\n"
                "/language de|en – Sprache der Meldungen (Gruppen)\n/help – diese Hilfe",
        "admin_help": "\n\nAdmins: /feeds – Zustand der Feeds, /reload – Konfiguration neu laden, "
                      "/allow &lt;id&gt; – Nutzer oder Chat freischalten, /disallow &lt;id&gt; – wieder sperren",
        "refused": "Entschuldigung, dieser Bot ist nur für freigeschaltete Nutzer. "
                   "Bitten Sie einen Admin, Sie freizuschalten (Ihre ID: {id}).",
        "admins_only": "Entschuldigung, das dürfen nur die Admins dieses Bots.",
        "group_admins_only": "In Gruppen und Kanälen dürfen nur deren Admins Abos und Einstellungen ändern.",
        "unknown": "Unbekannte Watchlist „{id}“. Gültig sind: {valid}",
        "which": "Welche Watchlist? Gültig sind: {valid}",
        "subscribed": "Abonniert: {name}",
        "already": "{name} ist schon abonniert.",
        "unsubscribed": "Abbestellt: {name}",
        "not_subscribed": "{name} war nicht abonniert.",
        "unsubscribed_all": "Alle Abos beendet ({n}).",
        "list_head": "Watchlists (✅ = abonniert):",
        "list_muted": "stumm bis {until} (/unmute)",
        "list_chat_muted": "🔕 Dieser Chat ist stumm bis {until} (/unmute).",
        "mute_not_subscribed": "{name} ist hier nicht (mehr) abonniert: es kommt nichts mehr davon.",
        "list_quiet": "🌙 Ruhezeiten {window} ({tz}) (/quiet off).",
        "list_digest": "🗞 Zusammenfassung: {mode} (/digest off).",
        "paused": "⏸ von den Admins pausiert: sendet zurzeit nichts",
        "list_gone": "abonniert, aber von den Admins entfernt oder umbenannt: sendet nichts, bis sie wieder da ist "
                     "(/unsubscribe {id} beendet das Abo)",
        "muted": "Stumm bis {until}. Meldungen werden aufbewahrt und danach zusammengefasst.",
        "bad_mute": "Bitte eine Dauer angeben, z. B. /mute 2h oder /mute 1d.",
        "unmuted": "Wieder laut. {n} aufbewahrte Meldungen kommen gleich als Zusammenfassung.",
        "unmuted_one": "Wieder laut. Die aufbewahrte Meldung kommt gleich.",
        "unmuted_none": "Wieder laut. Während der Stummschaltung kam nichts.",
        "unmuted_kept": "Wieder laut. {n} aufbewahrte Meldungen warten noch auf die Zusammenfassung oder das Ende "
                        "der Ruhezeit.",
        "recent_none": "Noch keine Treffer für {name}.",
        "recent_head": "Die letzten Treffer für {name}:",
        "quiet_set": "Ruhezeiten: {window} ({tz}). Meldungen in dieser Zeit kommen danach gesammelt.",
        "quiet_off": "Keine Ruhezeiten.",
        "bad_quiet": "Bitte so: /quiet 22:00-07:00 oder /quiet off",
        "digest_set": "Zusammenfassung: {mode}.",
        "bad_digest": "Bitte so: /digest off, /digest hourly oder /digest daily 08:00",
        "allowed": "Freigeschaltet: {id}",
        "bad_allow": "Bitte so: /allow 123456789",
        "bad_disallow": "Bitte so: /disallow 123456789",
        "disallowed": "Gesperrt: {id}. Der Chat bekommt keine Meldungen mehr; {n} wartende wurden verworfen. "
                      "Seine Abos bleiben für ein neues /allow.",
        "disallow_unknown": "{id} war nicht mit /allow freigeschaltet (oder ist schon gesperrt); nichts geändert.",
        "disallow_env": "{id} steht in MEDIABOT_ALLOWED_USERS oder MEDIABOT_ADMINS: dort streichen und den Bot "
                        "neu starten.",
        "disallow_configured": "{id} steht unter chats: in {lists}: dort streichen.",
        "disallow_open": "Der Bot ist offen für alle (MEDIABOT_ALLOWED_USERS ist leer); /disallow sperrt niemanden.",
        "reload_ok": "Konfiguration neu geladen: {feeds} Feeds, {watchlists} Watchlists.",
        "reload_bad": "Konfiguration abgelehnt, die letzte gültige bleibt aktiv:\n{problems}",
        "feeds_none": "Noch keine Feeds abgefragt.",
        "muted_watchlist": "{name} für 24 h stumm.",
        "mute_configured": "Dieser Chat bekommt {name} über die Konfiguration des Bots (chats: in der Watchlist); "
                           "das können nur die Bot-Admins ändern. /mute schaltet den ganzen Chat stumm.",
        "unknown_command": "Unbekannter Befehl {cmd}. /help zeigt alle Befehle.",
        "crashed": "Das hat leider nicht geklappt (ein Fehler im Bot; er steht im Log für die Admins). "
                   "Bitte später noch einmal versuchen.",
        "store_busy": "Das ging gerade nicht: der Bot konnte es nicht speichern (sein Speicher ist belegt oder "
                      "voll). Bitte in einer Minute noch einmal versuchen.",
        "language_set": "Sprache der Meldungen: Deutsch.",
        "bad_language": "Bitte so: /language de oder /language en",
        "language_private": "In privaten Chats folgen die Meldungen der Sprache Ihrer Telegram-App (jetzt: Deutsch).",
    },
    "en": {
        "welcome": "Welcome to the media monitor. I report new coverage on these watchlists — "
                   "tap one to subscribe. /help lists every command.",
        "help": "/list – watchlists and subscriptions\n/subscribe &lt;id&gt; – subscribe\n"
                "/unsubscribe &lt;id|all&gt; – unsubscribe\n/mute 2h – mute (also 30m, 1d, 1w; a bare number: hours)\n"
                "/unmute – unmute, with a summary\n/recent &lt;id&gt; – the last 10 matches\n"
                "/quiet 22:00-07:00 – quiet hours (off to turn off)\n"
                "/digest off|hourly|daily 08:00 – collected alerts\n"
                "/language de|en – alert language (groups)\n/help – this help",
        "admin_help": "\n\nAdmins: /feeds – feed health, /reload – reload the config, "
                      "/allow &lt;id&gt; – let a user or chat in, /disallow &lt;id&gt; – take that back",
        "refused": "Sorry, this bot is restricted to approved users. "
                   "Please ask an admin to let you in (your id: {id}).",
        "admins_only": "Sorry, only this bot's admins may do that.",
        "group_admins_only": "In groups and channels only their admins may change subscriptions and settings.",
        "unknown": "Unknown watchlist \"{id}\". Valid ones: {valid}",
        "which": "Which watchlist? Valid ones: {valid}",
        "subscribed": "Subscribed: {name}",
        "already": "Already subscribed to {name}.",
        "unsubscribed": "Unsubscribed: {name}",
        "not_subscribed": "You were not subscribed to {name}.",
        "unsubscribed_all": "All subscriptions ended ({n}).",
        "list_head": "Watchlists (✅ = subscribed):",
        "list_muted": "muted until {until} (/unmute)",
        "list_chat_muted": "🔕 This chat is muted until {until} (/unmute).",
        "mute_not_subscribed": "This chat is not subscribed to {name} (any more): nothing more comes from it.",
        "list_quiet": "🌙 Quiet hours {window} ({tz}) (/quiet off).",
        "list_digest": "🗞 Digest: {mode} (/digest off).",
        "paused": "⏸ paused by the admins: sends nothing for now",
        "list_gone": "subscribed, but removed or renamed by the admins: sends nothing until it is back "
                     "(/unsubscribe {id} ends the subscription)",
        "muted": "Muted until {until}. Alerts are kept and summarised afterwards.",
        "bad_mute": "Please give a duration, e.g. /mute 2h or /mute 1d.",
        "unmuted": "Unmuted. {n} kept alerts follow as one summary.",
        "unmuted_one": "Unmuted. The kept alert follows.",
        "unmuted_none": "Unmuted. Nothing arrived while muted.",
        "unmuted_kept": "Unmuted. {n} kept alerts still wait for your digest or the end of quiet hours.",
        "recent_none": "No matches yet for {name}.",
        "recent_head": "The latest matches for {name}:",
        "quiet_set": "Quiet hours: {window} ({tz}). Alerts in that time arrive collected afterwards.",
        "quiet_off": "No quiet hours.",
        "bad_quiet": "Please write: /quiet 22:00-07:00 or /quiet off",
        "digest_set": "Digest: {mode}.",
        "bad_digest": "Please write: /digest off, /digest hourly or /digest daily 08:00",
        "allowed": "Allowed: {id}",
        "bad_allow": "Please write: /allow 123456789",
        "bad_disallow": "Please write: /disallow 123456789",
        "disallowed": "Locked out: {id}. The chat gets no more alerts; {n} waiting ones were dropped. "
                      "Its subscriptions stay for a new /allow.",
        "disallow_unknown": "{id} was not let in with /allow (or is locked out already); nothing changed.",
        "disallow_env": "{id} is in MEDIABOT_ALLOWED_USERS or MEDIABOT_ADMINS: remove it there and restart the bot.",
        "disallow_configured": "{id} is listed under chats: in {lists}: remove it there.",
        "disallow_open": "The bot is open to everyone (MEDIABOT_ALLOWED_USERS is empty); /disallow locks nobody out.",
        "reload_ok": "Config reloaded: {feeds} feeds, {watchlists} watchlists.",
        "reload_bad": "Config rejected; the last good one stays in force:\n{problems}",
        "feeds_none": "No feed polled yet.",
        "muted_watchlist": "{name} muted for 24 h.",
        "mute_configured": "This chat gets {name} through the bot's configuration (chats: in the watchlist); only "
                           "the bot's admins can change that. /mute mutes the whole chat.",
        "unknown_command": "Unknown command {cmd}. /help lists every command.",
        "crashed": "Sorry, that did not work (a fault in the bot; it is in the log for the admins). "
                   "Please try again later.",
        "store_busy": "That did not work just now: the bot could not save it (its store is busy or full). "
                      "Please try again in a minute.",
        "language_set": "Alert language: English.",
        "bad_language": "Please write: /language de or /language en",
        "language_private": "In private chats alerts follow your Telegram app's language (now: English).",
    },
}

_MENU = {
    "de": [("start", "Start und Watchlists"), ("list", "Watchlists und Abos"), ("subscribe", "Watchlist abonnieren"),
           ("unsubscribe", "Abo beenden"), ("mute", "Stumm schalten, z. B. 2h"), ("unmute", "Wieder laut"),
           ("recent", "Letzte Treffer"), ("quiet", "Ruhezeiten, z. B. 22:00-07:00"),
           ("digest", "Zusammenfassung: off, hourly, daily 08:00"), ("language", "Sprache der Meldungen (Gruppen)"),
           ("help", "Hilfe")],
    "en": [("start", "Start and watchlists"), ("list", "Watchlists and subscriptions"),
           ("subscribe", "Subscribe to a watchlist"), ("unsubscribe", "End a subscription"),
           ("mute", "Mute, e.g. 2h"), ("unmute", "Unmute"), ("recent", "Latest matches"),
           ("quiet", "Quiet hours, e.g. 22:00-07:00"), ("digest", "Digest: off, hourly, daily 08:00"),
           ("language", "Alert language (groups)"), ("help", "Help")],
}


_DEFAULT = {"language": "de"}  # MEDIABOT_LANGUAGE, set by make_application


def _lang(update: Update) -> str:
    """The user's app language when the bot speaks it, else the deployment's (MEDIABOT_LANGUAGE)."""
    user = update.effective_user
    code = (user.language_code or "").lower()[:2] if user else ""
    return code if code in ("de", "en") else _DEFAULT["language"]


def _t(update: Update, key: str, **kw: Any) -> str:
    return _T[_lang(update)][key].format(**kw)


def _rt(context: ContextTypes.DEFAULT_TYPE) -> Runtime:
    rt: Runtime = context.application.bot_data["rt"]
    return rt


def _e(text: str) -> str:
    return html.escape(text, quote=False)


def _chunks(lines: list[str], limit: int = MAX_MESSAGE) -> list[str]:
    """Lines joined into messages within Telegram's 4,096-character limit, split only between lines so
    no HTML tag or entity is cut (Telegram rejects such a message). Callers keep each line short."""
    out: list[str] = []
    current = ""
    for line in lines:
        if current and len(current) + 1 + len(line) > limit:
            out.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line
    if current:
        out.append(current)
    return out


async def _reply(update: Update, text: str, markup: InlineKeyboardMarkup | None = None) -> None:
    """Answer in the chat; a reply over Telegram's limit (/list with many watchlists, /reload's problems)
    goes as several messages, the buttons under the last, instead of being rejected and lost."""
    if update.effective_message is None:
        return
    lines = [line if len(line) <= MAX_MESSAGE else html.escape(shorten(_strip_tags(html.unescape(line)),
                                                                      MAX_MESSAGE // 2))
             for line in text.split("\n")] if len(text) > MAX_MESSAGE else [text]
    chunks = _chunks(lines)
    for n, chunk in enumerate(chunks, 1):
        await update.effective_message.reply_text(chunk, parse_mode=ParseMode.HTML, do_quote=False,
                                                  reply_markup=markup if n == len(chunks) else None)


def _is_admin(rt: Runtime, update: Update) -> bool:
    user = update.effective_user
    return user is not None and user.id in rt.settings.admins


def _is_allowed(rt: Runtime, update: Update) -> bool:
    """Open bot, a bot admin, an id in MEDIABOT_ALLOWED_USERS, or one an admin let in with /allow; not in a
    chat an admin locked out with /disallow (it would take subscriptions it gets no alerts for)."""
    if not rt.settings.allowed or _is_admin(rt, update):
        return True
    chat = update.effective_chat
    if chat is not None and chat.id not in rt.settings.allowed and rt.store.is_locked_out(chat.id):
        return False
    ids = [x.id for x in (update.effective_user, update.effective_chat) if x is not None]
    return any(i in rt.settings.allowed or rt.store.is_allowed(i) for i in ids)


async def _may_change(rt: Runtime, update: Update, context: ContextTypes.DEFAULT_TYPE) -> bool:
    """In groups and channels only their admins (getChatMember) change subscriptions and settings; a
    channel's readers can press an alert's buttons too. An anonymous admin's message is sent on behalf
    of the group itself (sender_chat is the group): that is an admin's."""
    chat, user = update.effective_chat, update.effective_user
    if chat is None or chat.type not in ("group", "supergroup", "channel") or _is_admin(rt, update):
        return True
    message = update.effective_message
    # not for buttons: the message under a button in a channel is the channel's own post
    if update.callback_query is None and message is not None and message.sender_chat is not None \
            and message.sender_chat.id == chat.id:
        return True
    if user is None:
        return False
    member = await context.bot.get_chat_member(chat.id, user.id)
    return member.status in (ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER)


def _guard(handler: Handler, *, admin: bool = False, changes: bool = False, anyone: bool = False) -> Handler:
    """`anyone`: also for users a restricted bot refuses (to /unsubscribe after being taken off the list)."""
    async def wrapped(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        rt = _rt(context)
        if admin and not _is_admin(rt, update):
            await _reply(update, _t(update, "admins_only"))
            return
        if not anyone and not _is_allowed(rt, update):
            user = update.effective_user
            logger.info("refused chat=%s user=%s", update.effective_chat.id if update.effective_chat else "?",
                        user.id if user else "?")
            await _reply(update, _t(update, "refused", id=user.id if user else "?"))
            return
        if changes and not await _may_change(rt, update, context):
            await _reply(update, _t(update, "group_admins_only"))
            return
        _ensure_chat(rt, update)
        await handler(update, context)

    return wrapped


def _ensure_chat(rt: Runtime, update: Update) -> None:
    """Record the chat (and a private chat's language) before a command. Bookkeeping: a store that cannot
    write just now (locked by another process) must not fail /help or /list; a command that writes
    (/subscribe) still fails then, and says so."""
    chat = update.effective_chat
    if chat is None:
        return
    try:
        rt.store.ensure_chat(chat.id, chat.type, chat.title or chat.first_name or "", _lang(update))
        if chat.type == "private":
            rt.store.update_chat(chat.id, language=_lang(update))
    except StoreUnavailableError as exc:
        logger.warning("chat=%s not recorded before its command: %s", chat.id, exc)


def _remember_topic(rt: Runtime, update: Update) -> None:
    """In a forum supergroup, alerts go to the topic where the chat last subscribed (the General topic when
    it was there), not always to General: the desk that subscribed reads its own topic."""
    chat, message = update.effective_chat, update.effective_message
    if chat is None or not chat.is_forum:
        return
    thread = message.message_thread_id if message is not None and message.is_topic_message else None
    rt.store.update_chat(chat.id, thread=thread)


def _names(rt: Runtime) -> dict[str, str]:
    return rt.config.watchlist_names()


def _valid(rt: Runtime) -> str:
    return ", ".join(f"<code>{_e(i)}</code>" for i in _names(rt))


def _keyboard(rt: Runtime, chat_id: int) -> InlineKeyboardMarkup:
    subs = rt.store.subscriptions(chat_id)
    rows = []
    for w in rt.config.watchlists:
        if w.id in subs:
            label = f"✅ {w.name}" + ("" if w.enabled else " ⏸")
            rows.append([InlineKeyboardButton(label, callback_data=f"unsub:{w.id}")])
        elif w.enabled:  # a paused list is not offered; its subscribers can still leave it
            rows.append([InlineKeyboardButton(f"➕ {w.name}", callback_data=f"sub:{w.id}")])
    return InlineKeyboardMarkup(rows)


def _chat_id(update: Update) -> int:
    assert update.effective_chat is not None
    return update.effective_chat.id


def _now() -> datetime:
    return datetime.now(UTC)


def _local(rt: Runtime, when: datetime) -> str:
    return when.astimezone(rt.settings.tz).strftime("%d.%m.%Y %H:%M")


# --------------------------------------------------------------------------- subscriber commands


async def _start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    rt = _rt(context)
    await _reply(update, _t(update, "welcome"), _keyboard(rt, _chat_id(update)))


async def _help(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    rt = _rt(context)
    text = _t(update, "help") + (_t(update, "admin_help") if _is_admin(rt, update) else "")
    await _reply(update, text)


async def _list(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    rt = _rt(context)
    subs = rt.store.subscriptions(_chat_id(update))
    mutes = {w: until for w, until in rt.store.mute_map(_chat_id(update)).items() if until > _now()}
    lines = [_t(update, "list_head")]
    for w in rt.config.watchlists:
        mark = "✅" if w.id in subs else "▫️"
        muted = f" 🔕 {_t(update, 'list_muted', until=_local(rt, mutes[w.id]))}" if w.id in mutes else ""
        paused = "" if w.enabled else f" {_t(update, 'paused')}"
        lines.append(f"{mark} <b>{_e(w.name)}</b> (<code>{_e(w.id)}</code>){muted}{paused} — {_e(w.description)}")
    for gone in sorted(subs - rt.config.watchlist_names().keys()):  # removed or renamed by the admins
        lines.append(f"⚠️ <code>{_e(gone)}</code> — {_t(update, 'list_gone', id=_e(gone))}")
    # The chat's own settings, so "why no alerts?" has an answer here (they showed nowhere but /quiet).
    prefs = ChatPrefs.from_row(rt.store.chat(_chat_id(update)))
    if prefs.muted_until and prefs.muted_until > _now():
        lines.append(_t(update, "list_chat_muted", until=_local(rt, prefs.muted_until)))
    if prefs.quiet:
        lines.append(_t(update, "list_quiet", window=_e(str(prefs.quiet)), tz=_e(rt.settings.timezone)))
    if prefs.digest.kind != "off":
        lines.append(_t(update, "list_digest", mode=_e(str(prefs.digest))))
    await _reply(update, "\n".join(lines))


def _args(context: ContextTypes.DEFAULT_TYPE) -> list[str]:
    """Command arguments, also when written as a comma list ("dprk-troops,kursk-front")."""
    return [a for arg in context.args or [] for a in arg.split(",") if a]


def _resolve(rt: Runtime, written: str) -> str:
    """A watchlist id as the user typed it: exact, else ignoring case and the <> copied from /help."""
    names = _names(rt)
    if written in names:
        return written
    bare = written.strip("<>\"'„“”«»").casefold()
    found = [i for i in names if i.casefold() == bare]
    return found[0] if len(found) == 1 else written


def _subscribe(rt: Runtime, update: Update, watchlist: str) -> str:
    names = _names(rt)
    watchlist = _resolve(rt, watchlist)
    if watchlist not in names:
        return _t(update, "unknown", id=_e(watchlist), valid=_valid(rt))
    added = rt.store.subscribe(_chat_id(update), watchlist, _now())
    logger.info("subscribed chat=%s watchlist=%s new=%s", _chat_id(update), watchlist, added)
    _remember_topic(rt, update)
    reply = _t(update, "subscribed" if added else "already", name=_e(names[watchlist]))
    listed = rt.config.watchlist(watchlist)
    if listed is not None and not listed.enabled:  # subscribed for when the admins switch it back on
        reply += f" ({_t(update, 'paused')})"
    return reply


def _unsubscribe(rt: Runtime, update: Update, watchlist: str) -> str:
    chat_id = _chat_id(update)
    if watchlist.lower() in ("all", "alle"):
        n = rt.store.unsubscribe(chat_id, None)
        logger.info("unsubscribed chat=%s watchlist=all count=%d", chat_id, n)
        return _t(update, "unsubscribed_all", n=n)
    names = _names(rt)
    watchlist = _resolve(rt, watchlist)
    if watchlist not in names and watchlist not in rt.store.subscriptions(chat_id):
        return _t(update, "unknown", id=_e(watchlist), valid=_valid(rt))
    removed = rt.store.unsubscribe(chat_id, watchlist)
    logger.info("unsubscribed chat=%s watchlist=%s", chat_id, watchlist)
    return _t(update, "unsubscribed" if removed else "not_subscribed", name=_e(names.get(watchlist, watchlist)))


async def _subscribe_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    rt = _rt(context)
    if not context.args:
        await _reply(update, _t(update, "which", valid=_valid(rt)), _keyboard(rt, _chat_id(update)))
        return
    await _reply(update, "\n".join(_subscribe(rt, update, a) for a in _args(context)))


async def _unsubscribe_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    rt = _rt(context)
    if not context.args:
        await _reply(update, _t(update, "which", valid=_valid(rt) + ", <code>all</code>"))
        return
    await _reply(update, "\n".join(_unsubscribe(rt, update, a) for a in _args(context)))


async def _mute(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    rt = _rt(context)
    try:
        duration = parse_mute(context.args[0] if context.args else "")
    except ValueError:
        await _reply(update, _t(update, "bad_mute"))
        return
    until = _now() + duration
    rt.store.update_chat(_chat_id(update), muted_until=until)
    logger.info("muted chat=%s until=%s", _chat_id(update), until.isoformat())
    await _reply(update, _t(update, "muted", until=_local(rt, until)))


def release_held(rt: Runtime, chat_id: int) -> int:
    """Release a chat's held alerts that may go now (as one digest); returns how many."""
    router = rt.deliverer.router
    if not isinstance(router, HoldRouter):
        return 0
    freed = router.release_chat(chat_id, _now())
    if freed:
        rt.deliverer.wake()
    return freed


async def _unmute(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    rt = _rt(context)
    chat_id = _chat_id(update)
    names = [_resolve(rt, a) for a in _args(context)]
    if names:  # `/unmute kursk-front`: that list's button mute only (it lifted every mute, the chat's too)
        unknown = [n for n in names if n not in _names(rt)]
        if unknown:
            await _reply(update, _t(update, "unknown", id=_e(unknown[0]), valid=_valid(rt)))
            return
        for watchlist in names:
            rt.store.set_watchlist_mute(chat_id, watchlist, None)
    else:
        rt.store.update_chat(chat_id, muted_until=None)
        for watchlist in rt.store.mute_map(chat_id):
            rt.store.set_watchlist_mute(chat_id, watchlist, None)
    freed = release_held(rt, chat_id)
    logger.info("unmuted chat=%s released=%d", chat_id, freed)
    still = 0 if freed else len(rt.store.outbox_rows("held", chat_id))  # waiting for quiet hours or the digest
    await _reply(update, _t(update, "unmuted_one") if freed == 1 else _t(update, "unmuted", n=freed) if freed else
                 _t(update, "unmuted_kept", n=still) if still else _t(update, "unmuted_none"))


async def _recent(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    rt = _rt(context)
    names = _names(rt)
    args = _args(context)
    wl = _resolve(rt, args[0]) if args else ""
    if wl not in names:
        key = "unknown" if args else "which"
        await _reply(update, _t(update, key, id=_e(args[0] if args else ""), valid=_valid(rt)))
        return
    matches = rt.store.recent_matches(wl, 10)
    if not matches:
        await _reply(update, _t(update, "recent_none", name=_e(names[wl])))
        return
    lines = [_t(update, "recent_head", name=_e(names[wl]))]
    for m in matches:
        title = _e(m.title[:200])
        link = safe_url(m.link)  # as alerts have it: a link Telegram refuses failed the whole list
        head = f'<a href="{html.escape(link, quote=True)}">{title}</a>' if link else title
        lines.append(f"• {_local(rt, m.published)} {head} <i>({_e(m.source)})</i>")
    await _reply(update, "\n".join(lines))


async def _quiet(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    rt = _rt(context)
    chat_id = _chat_id(update)
    if not context.args:
        prefs = ChatPrefs.from_row(rt.store.chat(chat_id))
        text = _t(update, "quiet_set", window=prefs.quiet, tz=rt.settings.timezone) if prefs.quiet \
            else _t(update, "quiet_off")
        await _reply(update, text + "\n" + _t(update, "bad_quiet"))
        return
    try:
        quiet = parse_quiet(" ".join(context.args))
    except ValueError:
        await _reply(update, _t(update, "bad_quiet"))
        return
    rt.store.update_chat(chat_id, quiet=str(quiet) if quiet else None)
    logger.info("quiet hours chat=%s window=%s", chat_id, quiet or "off")
    release_held(rt, chat_id)  # what the new window no longer holds goes now
    if quiet is None:
        await _reply(update, _t(update, "quiet_off"))
        return
    await _reply(update, _t(update, "quiet_set", window=quiet, tz=_e(rt.settings.timezone)))


async def _digest(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    rt = _rt(context)
    chat_id = _chat_id(update)
    try:
        mode = parse_digest(" ".join(context.args or []))
    except ValueError:
        await _reply(update, _t(update, "bad_digest"))
        return
    rt.store.update_chat(chat_id, digest=str(mode))
    logger.info("digest chat=%s mode=%s", chat_id, mode)
    release_held(rt, chat_id)
    await _reply(update, _t(update, "digest_set", mode=_e(str(mode))))


# --------------------------------------------------------------------------- bot-admin commands


async def _language(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A group's alert language, set by its admins (it was fixed by whoever first used a command)."""
    rt = _rt(context)
    chat = update.effective_chat
    if chat is not None and chat.type == "private":
        await _reply(update, _t(update, "language_private"))
        return
    args = _args(context)
    code = args[0].casefold()[:2] if args else ""
    if code not in _T:
        await _reply(update, _t(update, "bad_language"))
        return
    rt.store.update_chat(_chat_id(update), language=code)
    logger.info("chat language chat=%s language=%s", _chat_id(update), code)
    await _reply(update, _T[code]["language_set"])


async def _unknown(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A command this bot does not have, in a private chat (in groups it may be another bot's)."""
    message = update.effective_message
    if message is None or not message.text:
        return
    cmd = message.text.split()[0].split("@")[0]
    await _reply(update, _t(update, "unknown_command", cmd=_e(cmd[:40])))


async def _feeds(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The feeds in feeds.yaml and how their polls go; a paused one says so, and states of feeds no longer
    in feeds.yaml are named apart (they showed as ✅ or ❌ for weeks after the admin removed them)."""
    rt = _rt(context)
    states = {s.feed_id: s for s in rt.store.feed_states()}
    if not rt.config.feeds and not states:
        await _reply(update, _t(update, "feeds_none"))
        return
    lines = []
    for spec in rt.config.feeds:
        s = states.pop(spec.id, None)
        if not spec.enabled:
            lines.append(f"⏸ <b>{_e(spec.id)}</b> · paused in feeds.yaml (enabled: false)")
            continue
        if s is None:
            lines.append(f"🕓 <b>{_e(spec.id)}</b> · not polled yet")
            continue
        ok = "⛔" if s.disabled else "❌" if s.last_error else "✅"
        parts = [f"{ok} <b>{_e(s.feed_id)}</b>"]
        parts.append("ok " + (_local(rt, s.last_success) if s.last_success else "–"))
        if s.last_error:
            parts.append(f"error: {_e(s.last_error[:120])} ({s.failures}×)")
        if s.disabled:
            parts.append("disabled: not polled until its URL in feeds.yaml changes")
        elif s.next_poll:
            parts.append("next " + _local(rt, s.next_poll))
        lines.append(" · ".join(parts))
    if states:
        lines.append("Not in feeds.yaml any more (kept for their items): " + ", ".join(_e(i) for i in sorted(states)))
    await _reply(update, "\n".join(lines))


async def _reload(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    from bot.scheduler import reload_config

    rt = _rt(context)
    problems = await reload_config(rt, rt.settings)
    if problems:
        await _reply(update, _t(update, "reload_bad", problems=_e("\n".join(problems[:20]))))
        return
    await _reply(update, _t(update, "reload_ok", feeds=len(rt.config.feeds), watchlists=len(rt.config.watchlists)))


async def _allow(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    rt = _rt(context)
    target = _chat_id_arg(context)
    if target is None:
        await _reply(update, _t(update, "bad_allow"))
        return
    if rt.store.chat(target) is None:
        # A chat the bot has not met yet: a placeholder row, completed when the chat first writes.
        # An existing chat keeps its title, type (a supergroup stays one) and active flag.
        rt.store.ensure_chat(target, "private" if target > 0 else "group")
    rt.store.update_chat(target, allowed=1)
    logger.info("allowed chat=%s", target)
    await _reply(update, _t(update, "allowed", id=target))


async def _disallow(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Take back an /allow (a user who left the desk, a group let in by mistake)."""
    rt = _rt(context)
    target = _chat_id_arg(context)
    if target is None:
        await _reply(update, _t(update, "bad_disallow"))
        return
    if not rt.settings.allowed:
        await _reply(update, _t(update, "disallow_open"))
        return
    if target in rt.settings.allowed or target in rt.settings.admins:
        await _reply(update, _t(update, "disallow_env", id=target))
        return
    configured = [w.id for w in rt.config.watchlists if target in w.chats]
    if configured:
        await _reply(update, _t(update, "disallow_configured", id=target, lists=_e(", ".join(configured))))
        return
    dropped = rt.store.revoke(target)
    if dropped is None:
        await _reply(update, _t(update, "disallow_unknown", id=target))
        return
    logger.info("disallowed chat=%s dropped=%d", target, dropped)
    await _reply(update, _t(update, "disallowed", id=target, n=dropped))


def _chat_id_arg(context: ContextTypes.DEFAULT_TYPE) -> int | None:
    """The command's one argument as a Telegram chat id, or None."""
    try:
        target = int(context.args[0]) if context.args else 0
    except ValueError:
        return None
    return target if is_chat_id(target) else None


# --------------------------------------------------------------------------- buttons


async def _button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """`sub:<id>`, `unsub:<id>` (the /start keyboard) and `mute:<id>` (an alert's button)."""
    rt = _rt(context)
    query = update.callback_query
    if query is None or not query.data:
        return
    action, _, watchlist = query.data.partition(":")
    if not _is_allowed(rt, update):
        await _answer(update, _t(update, "refused", id=update.effective_user.id if update.effective_user else "?"))
        return
    if not await _may_change(rt, update, context):
        await _answer(update, _t(update, "group_admins_only"), show_alert=True)
        return
    _ensure_chat(rt, update)
    chat_id = _chat_id(update)
    if action == "sub":
        text = _subscribe(rt, update, watchlist)
    elif action == "unsub":
        text = _unsubscribe(rt, update, watchlist)
    elif action == "mute":
        name = _names(rt).get(watchlist, watchlist)
        now = _now()
        if rt.store.set_watchlist_mute(chat_id, watchlist, now + WATCHLIST_MUTE, now):
            logger.info("watchlist muted chat=%s watchlist=%s", chat_id, watchlist)
            text = _t(update, "muted_watchlist", name=name)
        elif chat_id in (listed.chats if (listed := rt.config.watchlist(watchlist)) else ()):
            text = _t(update, "mute_configured", name=name)  # an alert from before the button was left off there
        else:  # unsubscribed since, or the list is gone: nothing to mute
            text = _t(update, "mute_not_subscribed", name=name)
    else:
        await _answer(update, "")
        return
    if not await _answer(update, html.unescape(_strip_tags(text))[:190]) and update.effective_chat is not None \
            and update.effective_chat.type == "private":
        await _reply(update, text)  # pressed while the bot was down: the outcome as a message instead
    if action in ("sub", "unsub") and query.message is not None:
        try:
            await query.edit_message_reply_markup(_keyboard(rt, chat_id))
        except Exception:  # the keyboard is a convenience; the answer above already told the user
            logger.debug("keyboard refresh failed chat=%s", chat_id, exc_info=True)


async def _answer(update: Update, text: str, *, show_alert: bool = False) -> bool:
    """Answer a button press; False when Telegram no longer takes the answer (a press made while the bot
    was down reaches it later, and an answer is only taken within seconds): that is no fault to log."""
    query = update.callback_query
    assert query is not None
    try:
        await query.answer(text or None, show_alert=show_alert)
    except BadRequest as exc:
        if "query is too old" not in str(exc).lower() and "query id is invalid" not in str(exc).lower():
            raise
        logger.info("button answered too late chat=%s data=%s", _chat_id(update), query.data)
        return False
    return True


def _strip_tags(text: str) -> str:
    out, inside = [], False
    for ch in text:
        if ch == "<":
            inside = True
        elif ch == ">":
            inside = False
        elif not inside:
            out.append(ch)
    return "".join(out)


# --------------------------------------------------------------------------- the Application


def add_handlers(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Register every command and button handler."""
    plain: dict[str, Handler] = {"start": _start, "help": _help, "list": _list, "recent": _recent}
    changing: dict[str, Handler] = {"subscribe": _subscribe_cmd, "mute": _mute, "unmute": _unmute,
                                    "quiet": _quiet, "digest": _digest, "language": _language}
    admin: dict[str, Handler] = {"feeds": _feeds, "reload": _reload, "allow": _allow, "disallow": _disallow}
    new_only = filters.UpdateType.MESSAGE  # not edits: correcting an old "/unsubscribe all" must not run it again
    for name, fn in plain.items():
        app.add_handler(CommandHandler(name, _guard(fn), filters=new_only))
    for name, fn in changing.items():
        app.add_handler(CommandHandler(name, _guard(fn, changes=True), filters=new_only))
    for name, fn in admin.items():
        app.add_handler(CommandHandler(name, _guard(fn, admin=True), filters=new_only))
    unsubscribe = _guard(_unsubscribe_cmd, changes=True, anyone=True)
    app.add_handler(CommandHandler("unsubscribe", unsubscribe, filters=new_only))
    app.add_handler(CallbackQueryHandler(_button))
    app.add_handler(MessageHandler(filters.StatusUpdate.MIGRATE, _migrated))
    app.add_handler(ChatMemberHandler(_membership, ChatMemberHandler.MY_CHAT_MEMBER))
    # any other command: in the same group after the commands, so it runs only when none of them took it
    app.add_handler(MessageHandler(filters.COMMAND & filters.ChatType.PRIVATE & new_only, _guard(_unknown)))
    app.add_error_handler(_on_error)


async def _membership(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The bot was added to a chat, removed, restricted or given the right to post (Telegram tells it, in
    groups and channels alike, and when a user blocks or unblocks it). A chat it may post to again gets its
    subscriptions' alerts again at once; before, a group that re-added the bot stayed silent until someone
    typed a command there. One it may not post to is stopped now, not at its next failed alert."""
    change = update.my_chat_member
    if change is None:
        return
    rt = _rt(context)
    chat, member = change.chat, change.new_chat_member
    if _may_post(member):
        rt.store.ensure_chat(chat.id, chat.type, chat.title or chat.first_name or "", rt.settings.language)
        logger.info("bot may post in chat=%s status=%s", chat.id, member.status)
    else:
        rt.store.deactivate_chat(chat.id)
        logger.info("bot may not post in chat=%s status=%s; its alerts stop until it may", chat.id, member.status)


def _may_post(member: ChatMember) -> bool:
    """Whether the bot, as this member of a chat, can send messages there."""
    if member.status in (ChatMember.LEFT, ChatMember.BANNED):
        return False
    if member.status == ChatMember.RESTRICTED:
        return bool(getattr(member, "is_member", False) and getattr(member, "can_send_messages", False))
    # a channel admin without "Post messages" may not post either
    return not (member.status == ChatMember.ADMINISTRATOR and getattr(member, "can_post_messages", None) is False)


async def _migrated(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A group became a supergroup (Telegram posts this in the old group): its subscriptions, settings and
    pending alerts move to the new id now, not at the next alert, so the supergroup's /list is right."""
    message = update.effective_message
    if message is None or not message.migrate_to_chat_id:
        return  # the twin message in the new supergroup (migrate_from_chat_id): the old group's did the work
    rt = _rt(context)
    rt.store.migrate_chat(message.chat_id, message.migrate_to_chat_id)
    logger.info("chat migrated chat=%s new_chat=%s", message.chat_id, message.migrate_to_chat_id)


async def _on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A handler that crashed is a bug: logged with its traceback, and the user hears that it failed
    instead of nothing. Without an update it is the long polling's trouble (the network): one line."""
    if not isinstance(update, Update):
        logger.error("telegram polling failed: %s: %s", type(context.error).__name__, context.error)
        return
    if isinstance(context.error, StoreUnavailableError):  # locked by another process, a full disk: one line
        logger.warning("command not done, the state store failed: %s", context.error)
        key = "store_busy"
    else:
        logger.error("command failed: %s: %s", type(context.error).__name__, context.error, exc_info=context.error)
        key = "crashed"
    if update.callback_query is not None:
        with contextlib.suppress(TelegramError):
            await update.callback_query.answer(_t(update, key)[:200])
        return
    with contextlib.suppress(TelegramError):
        await _reply(update, _t(update, key))


async def set_menu(bot: Any) -> None:
    """The command menu in German (also the default) and English."""
    for lang in ("de", "en"):
        await bot.set_my_commands([BotCommand(c, d) for c, d in _MENU[lang]], language_code=lang)
    await bot.set_my_commands([BotCommand(c, d) for c, d in _MENU[_DEFAULT["language"]]])


def make_application(rt: Runtime) -> Any:
    """The Application with its handlers; nothing goes over the network yet."""
    app = Application.builder().bot(rt.bot).build()
    app.bot_data["rt"] = rt
    _DEFAULT["language"] = rt.settings.language
    add_handlers(app)
    return app


async def start_application(app: Any, stop: asyncio.Event, *, first_wait: float = 1.0,
                            longest_wait: float = START_RETRY_LONGEST) -> bool:
    """Check the token (getMe) and start long polling. Network trouble is retried with backoff until it
    works or `stop` is set (False): a Telegram outage at boot must not become a crash loop, and feeds are
    polled and alerts queued meanwhile. A rejected token raises TokenRejectedError: waiting cannot fix it."""
    from telegram.error import InvalidToken, RetryAfter, TelegramError

    from bot.deliver import retry_after_seconds

    wait = first_wait
    while True:
        pause = wait
        try:
            await app.initialize()
            break
        except InvalidToken as exc:
            raise TokenRejectedError() from exc
        except RetryAfter as exc:  # flood control: wait what Telegram asks, it is not a fault to fix
            pause = max(wait, retry_after_seconds(exc))
            logger.warning("telegram asks to wait at start (flood control), retrying in %.0f s", pause)
        except TelegramError as exc:  # network, timeouts, 5xx and other answers that may pass
            logger.warning("telegram not reachable at start, retrying in %.0f s; feeds are polled and alerts "
                           "queue meanwhile: %s", pause, exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=pause)
        if stop.is_set():
            return False
        wait = min(wait * 2, longest_wait)
    try:
        await set_menu(app.bot)
    except Exception as exc:  # the menu is cosmetic; commands work without it
        logger.warning("setMyCommands failed: %s", type(exc).__name__)
    await app.start()
    if app.updater is not None:
        # bootstrap (deleteWebhook) retried for ever: the same outage may still be going on
        await app.updater.start_polling(drop_pending_updates=False, bootstrap_retries=-1,
                                        error_callback=_polling_failed)
        for task in asyncio.all_tasks():
            if task.get_name() == _POLLING_TASK:
                task.add_done_callback(functools.partial(_polling_ended, app))
    logger.info("telegram connected bot=@%s", app.bot.username)
    return True


_POLLING_TASK = "Updater:start_polling:polling_task"  # python-telegram-bot's name for its getUpdates loop


def _polling_ended(app: Any, task: asyncio.Task[Any]) -> None:
    """python-telegram-bot's polling loop retries network trouble for ever but gives up on a rejected token
    (revoked in BotFather while the bot runs), with a traceback of its own and nothing else: say what it
    means, and let health and delivery know (alerts stay queued, as when a send finds the token rejected)."""
    from telegram.error import InvalidToken

    if task.cancelled() or task.exception() is None:
        return  # stopped on purpose
    exc = task.exception()
    if isinstance(exc, InvalidToken):
        app.bot_data["rt"].deliverer.token_rejected = True
        logger.error("telegram rejected the bot token while running (revoked?): commands get no answer and alerts "
                     "stay queued; set a new TELEGRAM_BOT_TOKEN and restart")
    else:
        logger.error("telegram polling stopped: %s: %s; commands get no answer until a restart",
                     type(exc).__name__, exc)


_said: dict[str, float] = {}  # what the polling error callback last said, when (monotonic)


def _polling_failed(exc: Exception) -> None:
    """getUpdates failed (PTB retries on its own, up to 30 s apart). Its default logs a traceback per try;
    one line says what to do, and a lasting condition is repeated every ten minutes, not every try."""
    from telegram.error import Conflict

    if isinstance(exc, Conflict):
        key, level = "conflict", logging.ERROR
        text = ("another process is polling Telegram with this bot token (409 Conflict): commands are answered "
                "there, not here. Stop it, or give each deployment its own bot token")
    else:
        key, level = type(exc).__name__, logging.WARNING
        text = f"telegram polling failed, retrying: {type(exc).__name__}: {exc}"
    now = time.monotonic()
    if now - _said.get(key, -1e9) >= 600:
        _said[key] = now
        logger.log(level, "%s", text)


async def stop_application(app: Any) -> None:
    """Stop polling and the Application, whatever part of the start it got through. A step that fails (the
    updater re-raises what ended its polling loop, a rejected token) does not keep the next from running."""
    steps = []
    if app.updater is not None and app.updater.running:
        steps.append(app.updater.stop)
    if app.running:
        steps.append(app.stop)
    steps.append(app.shutdown)
    for step in steps:
        try:
            await step()
        except Exception as exc:
            logger.info("telegram %s at shutdown: %s: %s", step.__name__, type(exc).__name__, exc)
