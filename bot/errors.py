"""The exception tree. Classes are chosen by what the caller must do next.

    BotError
    ├── ConfigError                bad env/YAML; carries every problem with file:line
    ├── FetchError
    │   ├── TransientFetchError    timeout, connect, 429, 5xx  -> back off, keep polling
    │   └── PermanentFetchError    404/410, 401/403, not a feed -> log, slow down / disable
    ├── ParseError                 feed body unusable
    ├── StoreError                 SQLite failure, or a store written by a newer version
    │   └── StoreLockedError       another instance holds the state directory
    └── DeliveryError
        ├── RetryLaterError        RetryAfter or network; carries retry_after
        ├── ChatUnavailableError   Forbidden, chat not found, ChatMigrated
        ├── TokenRejectedError     Telegram refuses the bot token -> keep every row, tell the operator
        └── MessageGoneError       the alert to edit was deleted or is too old -> stop editing it
"""

from __future__ import annotations


class BotError(Exception):
    """Base of every error mediabot raises on purpose."""


class ConfigError(BotError):
    """One or more configuration problems, each already formatted as `file:line: message`."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class FetchError(BotError):
    """A feed could not be fetched."""


class TransientFetchError(FetchError):
    """Worth retrying later (timeouts, 429, 5xx); `retry_after` in seconds when the server said."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentFetchError(FetchError):
    """Retrying soon will not help (404, 410, 403, not a feed)."""


class ParseError(BotError):
    """The body is not a usable feed."""


class StoreError(BotError):
    """The state store failed or cannot be used."""


class StoreLockedError(StoreError):
    """Another mediabot process holds the state directory."""


class DeliveryError(BotError):
    """A message could not be delivered."""


class RetryLaterError(DeliveryError):
    """Telegram asked us to wait (429) or the network failed; `retry_after` in seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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
