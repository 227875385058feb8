"""python-telegram-bot Application: subscriber and admin commands (long polling)."""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)


async def build_application(rt: Any) -> Any:
    """Create, initialise and start the Application with long polling."""
    from telegram.ext import Application

    app = Application.builder().bot(rt.bot).build()
    await app.initialize()
    await app.start()
    if app.updater is not None:
        await app.updater.start_polling(drop_pending_updates=False)
    return app


async def stop_application(app: Any) -> None:
    """Stop polling and the Application."""
    if app.updater is not None and app.updater.running:
        await app.updater.stop()
    await app.stop()
    await app.shutdown()
