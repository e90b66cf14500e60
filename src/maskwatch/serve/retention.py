"""Retention: a periodic job (run by the store writer, the only writer) that deletes old events and snapshots.

Events past ``retention.days`` go first; then, while the snapshot folder is over ``retention.max_mb``,
the oldest events with a snapshot. Only this node's events: another node's files are not here.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from maskwatch.serve.config import RetentionConfig
from maskwatch.serve.snapshots import folder_size_mb
from maskwatch.serve.store import Store

log = logging.getLogger(__name__)


def _remove(files: list[str | None]) -> None:
    for name in files:
        if name:
            try:
                Path(name).unlink(missing_ok=True)
            except OSError as error:
                log.warning("retention: cannot delete %s (%s)", name, error.strerror or error)


def _size_mb(name: str) -> float:
    try:
        return Path(name).stat().st_size / 1e6
    except OSError:
        return 0.0


def apply_retention(store: Store, node: str, config: RetentionConfig, snapshot_dir: Path, now: float | None = None) -> int:
    """Delete what is over the limits, oldest first; return how many events went."""
    now = time.time() if now is None else now
    old = store.expired(now - config.days * 86400, node)
    _remove([snapshot for _, snapshot in old])
    store.delete_events([event_id for event_id, _ in old])
    deleted = len(old)
    size = folder_size_mb(snapshot_dir)
    while size > config.max_mb:
        batch = store.oldest_with_snapshot(node, n=200)
        chosen = []
        for event_id, snapshot in batch:
            if size <= config.max_mb:
                break
            size -= _size_mb(snapshot)
            chosen.append((event_id, snapshot))
        if not chosen:
            break
        _remove([snapshot for _, snapshot in chosen])
        store.delete_events([event_id for event_id, _ in chosen])
        deleted += len(chosen)
    if deleted:
        log.info("retention: deleted %d event(s); snapshots now %.1f MB", deleted, size)
    return deleted
