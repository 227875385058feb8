"""Memory benchmark: 100,000 items in the store and a full dedup window (issue 8).

    .venv/bin/python bench/bench_memory.py [--items 100000]

Writes N generated items (multilingual, as bench/_feedgen.py makes them) into a SqliteStore in a
temporary directory, 50 per `record_items` call as a feed poll would, then adds the same N items to
a `dedup.StoryIndex` (all inside its 48 h window) and times `find` for 1,000 new items against it,
and `seen_keys` (the pipeline's lookup) for 200 polls of 50 items. Items are generated in chunks of
10,000, so the process holds what the bot would hold (store connection, index), not a list of all items.
Prints RSS after each step and the peak (VmHWM).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._feedgen import _item_text, feed_lang  # noqa: E402
from bot.dedup import StoryIndex, identity_keys  # noqa: E402
from bot.models import FeedSpec, Item  # noqa: E402
from bot.parse import make_item  # noqa: E402
from bot.store import NewItem, SqliteStore  # noqa: E402
from bot.text import html_to_text  # noqa: E402

PER_FEED = 50


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def make_items(n: int, now: datetime, start: int = 0) -> list[Item]:
    """N items spread over 1,000 feeds, published within the last 47 hours."""
    out = []
    for k in range(start, start + n):
        i, seq = k % 1000, k // 1000
        spec = FeedSpec(id=f"f{i}", url=f"https://news{i}.example/feed", name=f"Feed {i}", lang=feed_lang(i))
        title, summary = _item_text(i, seq)
        published = now - timedelta(seconds=(k * 1.69) % (47 * 3600))
        out.append(make_item(spec, html_to_text(title), html_to_text(summary), f"https://news{i}.example/a/{seq}",
                             f"news{i}-{seq}", published, now, lang=spec.lang))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=100_000)
    n = ap.parse_args().items
    now = datetime.now(UTC)
    print(f"bench_memory: {n} items, Python {sys.version.split()[0]}")
    print(f"RSS at start (imports done):        {rss_mb():6.0f} MB")
    with tempfile.TemporaryDirectory(prefix="mediabot-mem-") as tmp:
        store = SqliteStore(Path(tmp) / "mediabot.db")
        try:
            took = 0.0
            for b in range(0, n, 10_000):  # generated in chunks: the bot never holds all items either
                chunk = make_items(min(10_000, n - b), now, start=b)
                t = time.perf_counter()
                for c in range(0, len(chunk), PER_FEED):
                    store.record_items([NewItem(it, [it.key], [], []) for it in chunk[c:c + PER_FEED]], None, now)
                took += time.perf_counter() - t
            del chunk
            gc.collect()
            size = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 2**20
            print(f"RSS after storing {n} items:    {rss_mb():6.0f} MB  ({took:.1f} s, "
                  f"{took / (n / PER_FEED) * 1000:.2f} ms per 50-item record_items; db+wal {size:.0f} MB)")

            def keys_of(items: list[Item]) -> list[list[str]]:
                return [identity_keys(it.feed_id, it.guid, it.canonical_link, it.title) for it in items]

            keyed = keys_of(make_items(200 * PER_FEED, now, start=n))  # unseen
            keyed_seen = keys_of(make_items(200 * PER_FEED, now, start=0))
            t = time.perf_counter()
            for b in range(0, len(keyed), PER_FEED):
                store.seen_keys([k for keys in keyed[b:b + PER_FEED] for k in keys])
            new_ms = (time.perf_counter() - t) / 200 * 1000
            t = time.perf_counter()
            for b in range(0, len(keyed_seen), PER_FEED):
                store.seen_keys([k for keys in keyed_seen[b:b + PER_FEED] for k in keys])
            seen_ms = (time.perf_counter() - t) / 200 * 1000
            print(f"seen_keys, the keys of 50 items per call:  {new_ms:.2f} ms (all new), {seen_ms:.2f} ms (all seen)")
        finally:
            store.close()

    del keyed, keyed_seen
    gc.collect()
    before = rss_mb()
    print(f"RSS with the store closed:          {before:6.0f} MB")
    index = StoryIndex()
    took = 0.0
    for b in range(0, n, 10_000):  # generated in chunks so that only the index grows
        chunk = make_items(min(10_000, n - b), now, start=b)
        t = time.perf_counter()
        for sid, it in enumerate(chunk, b + 1):
            index.add_item(it, sid)
        took += time.perf_counter() - t
    del chunk
    gc.collect()
    after = rss_mb()
    print(f"RSS with StoryIndex of {len(index)}:  {after:6.0f} MB  (+{after - before:.0f} MB, "
          f"{(after - before) * 2**20 / n / 1024:.1f} KB per item; {took / n * 1e6:.0f} µs per add)")
    probe = make_items(1000, now, start=n + 1000 * PER_FEED)
    times = []
    folded = 0
    for it in probe:
        t = time.perf_counter()
        folded += index.find(it, now) is not None
        times.append(time.perf_counter() - t)
    times.sort()
    print(f"StoryIndex.find on a full window:   mean {statistics.mean(times) * 1000:.2f} ms, "
          f"p99 {times[989] * 1000:.2f} ms, max {times[-1] * 1000:.2f} ms per item ({folded}/1000 folded)")
    print(f"peak RSS (VmHWM):                   {peak_mb():6.0f} MB (target < 200 MB)")


if __name__ == "__main__":
    main()
