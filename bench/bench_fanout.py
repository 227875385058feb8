"""Fan-out benchmark (not a test): one alert to 1,000 private chats through the real Deliverer and
TelegramSender (python-telegram-bot) against TelegramStub enforcing Telegram's limits.

    .venv/bin/python bench/bench_fanout.py [--chats 1000]

Prints the wall time against the ideal (chats / 30 s) and how many 429s the stand-in answered.
Target: within 10% of ideal, zero 429s.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.app import build_runtime  # noqa: E402
from bot.config import Settings, load_config  # noqa: E402
from bot.models import Item  # noqa: E402
from bot.store import NewItem  # noqa: E402
from tests.servers import TelegramStub  # noqa: E402


async def fan_out(chats: int) -> None:
    stub = TelegramStub(enforce_limits=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(token=TelegramStub.TOKEN, api_base_url=stub.base_url,
                            watchlists_dir=ROOT / "watchlists", state_dir=Path(tmp))
        rt = build_runtime(settings, load_config(settings.watchlists_dir))
        try:
            now = datetime.now(UTC)
            ids = list(range(10_000, 10_000 + chats))
            for c in ids:
                rt.store.ensure_chat(c)
            item = Item(key="bench", feed_id="bench", title="Nordkoreanische Soldaten kämpfen im Gebiet Kursk",
                        summary="Kiew meldet erste Gefechte mit Truppen aus Nordkorea.",
                        link="https://news.example.org/bench", canonical_link="https://news.example.org/bench",
                        guid="bench", published=now, lang="de", source="Example News")
            rt.store.record_items([NewItem(item, ["bench"], [], [(c, "dprk-troops") for c in ids])], None, now)
            await rt.bot.initialize()
            start = time.monotonic()
            stats = await rt.deliverer.drain(timeout=600)
            wall = time.monotonic() - start
        finally:
            await rt.aclose()
            stub.stop()
    ideal = chats / 30
    delivered = len({m.chat_id for m in stub.messages})
    print(f"fan-out to {chats} private chats: wall {wall:.2f} s, ideal {ideal:.2f} s "
          f"({(wall / ideal - 1) * 100:+.1f}% vs ideal)")
    print(f"delivered {delivered}/{chats} chats, sent={stats.sent}, 429s from the stand-in={stub.too_many}, "
          f"deferred={stats.retried}, failed={stats.failed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=1000)
    args = parser.parse_args()
    asyncio.run(fan_out(args.chats))


if __name__ == "__main__":
    main()
