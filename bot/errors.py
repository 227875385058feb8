"""The exception tree. Classes are chosen by what the caller must do next.

    BotError
    ├── ConfigError                bad env/YAML; carries every problem with file:line
    ├── ParseError                 feed body unusable
    ├── StoreError                 any failure of the store (a full disk, a broken file), or a store
    │   │                          written by a newer version; the database's own errors never escape it
    │   ├── StoreUnavailableError  it cannot write just now (locked by another process, full, read-only):
    │   │                          keep the work and try again later; not a bug
    │   └── StoreLockedError       another instance holds the state directory
    └── DeliveryError              anything else Telegram answered -> retry a few times
        ├── RetryLaterError        RetryAfter or network; carries retry_after
        ├── ChatUnavailableError   Forbidden, chat not found, ChatMigrated
        ├── TokenRejectedError     Telegram refuses the bot token -> keep every row, tell the operator
        ├── MessageGoneError       the alert to edit was deleted or is too old -> stop editing it
        └── MessageRejectedError   Telegram refuses this message (400) -> failed at once, never resent

A feed that cannot be fetched is not an exception: the fetcher returns a FetchResult with the error and
whether it is worth retrying soon, since most feeds fail now and then and the poll goes on.
"""

from __future__ import annotations


class BotError(Exception):
    """Base of every error mediabot raises on purpose."""


class ConfigError(BotError):
    """One or more configuration problems, each already formatted as `file:line: message`."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class ParseError(BotError):
    """The body is not a usable feed."""


class StoreError(BotError):
    """The state store failed or cannot be used."""


class StoreUnavailableError(StoreError):
    """The store cannot write just now (another process holds its lock, the disk is full, the file is
    read-only): the caller keeps its work and tries again later."""


class StoreLockedError(StoreError):
    """Another mediabot process holds the state directory."""


class DeliveryError(BotError):
    """A message could not be delivered."""


class RetryLaterError(DeliveryError):
    """Telegram asked us to wait (429) or the network failed; `retry_after` in seconds."""

    def __init__(self, message: str, retry_after: float, *, maybe_sent: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.maybe_sent = maybe_sent  # the request went out and its answer was lost: it may have been delivered


class ChatUnavailableError(DeliveryError):
    """The chat cannot receive messages any more, or moved (`migrated_to`)."""

    def __init__(self, message: str, migrated_to: int | None = None) -> None:
        super().__init__(message)
        self.migrated_to = migrated_to


class TokenRejectedError(DeliveryError):
    """Telegram refused the bot token (401/404 on every call): nothing can be sent until it is fixed."""

    def __init__(self) -> None:
        super().__init__("Telegram rejected the bot token (TELEGRAM_BOT_TOKEN); nothing can be sent until "
                         "it is replaced (ask @BotFather for the current one)")


class MessageGoneError(DeliveryError):
    """The message to edit ("also: …") was deleted in the chat or can no longer be edited."""


class MessageRejectedError(DeliveryError):
    """Telegram refused this message as it is (400 Bad Request): sending it again cannot help."""
