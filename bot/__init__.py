"""mediabot: RSS/Atom feeds -> watchlists -> one Telegram alert per story."""

__version__ = "0.1.0"
