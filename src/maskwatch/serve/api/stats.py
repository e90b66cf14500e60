"""``/api/stats``: compliance over time per camera, from the store's hourly counts."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from maskwatch.serve.api.events import get_store, parse_time, plain_text
from maskwatch.serve.api.models import Problem, StatsRow
from maskwatch.serve.store import Store

stats = APIRouter(prefix="/api/stats", tags=["stats"])
KEYS = ("people_seen", "compliant", "non_compliant")


@stats.get("", response_model=list[StatsRow], responses={422: {"model": Problem}})
def get_stats(
    store: Annotated[Store, Depends(get_store)],
    camera: str | None = None,
    since: str | None = Query(None, description="ISO 8601 time or epoch seconds; from the hour (or day) that holds it"),
    until: str | None = Query(None, description="ISO 8601 time or epoch seconds; buckets that start before it"),
    bucket: Literal["hour", "day"] = "hour",
) -> list[dict]:
    """People seen, compliant and non-compliant per camera and hour (UTC), summed over nodes, oldest first.
    ``hour`` is the bucket's start; with ``bucket=day`` it is midnight UTC."""
    since_t, until_t = parse_time("since", since), parse_time("until", until)
    rows = store.counts_by_hour(camera=plain_text("camera", camera), since=since_t, until=until_t)
    if bucket == "hour":
        return rows
    days: dict[tuple[str, str], dict] = {}
    for row in rows:
        start = row["hour"][:10] + "T00:00:00Z"
        total = days.setdefault((start, row["camera"]), {"camera": row["camera"], "hour": start, **dict.fromkeys(KEYS, 0)})
        for key in KEYS:
            total[key] += row[key]
    return list(days.values())
