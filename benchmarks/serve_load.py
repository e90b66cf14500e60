"""Load on ``maskwatch serve``'s HTTP API over loopback: ``/api/detect`` and ``/api/events``, bounded in time.

The server is a subprocess (uvicorn, the real app, the shipped models, default limits: 2 detect calls at once,
more answered 429); the clients are threads here, each with its own keep-alive connection. Reported: successful
requests per second, p50/p99 latency of the successful ones, 429 refusals (the cap working, not errors; a client
waits ``Retry-After`` before it tries again), errors (5xx or transport failures), and the server's RSS before and
after each run. Figures, not assertions.

    python benchmarks/serve_load.py --seconds 10 --clients 1 4 16 --events 100000
    python benchmarks/serve_load.py --seconds 5 --no-postgres          # SQLite only
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass
class Run:
    name: str
    clients: int
    seconds: float = 0.0
    ok: list[float] = field(default_factory=list)  # latencies of 2xx, seconds
    refused: int = 0  # 429
    errors: int = 0  # 5xx, transport errors
    rss_before_mb: float = 0.0
    rss_after_mb: float = 0.0

    def row(self) -> list[str]:
        p50, p99 = (np.percentile(self.ok, [50, 99]) * 1e3) if self.ok else (float("nan"), float("nan"))
        return [
            self.name, str(self.clients), f"{len(self.ok) / self.seconds:.1f}", f"{p50:.0f} / {p99:.0f}",
            str(self.refused), str(self.errors), f"{self.rss_before_mb:.0f} -> {self.rss_after_mb:.0f}",
        ]  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def serve(store: str, port: int) -> None:
    """The server side (``--_serve``): the real app with no cameras, on 127.0.0.1 only."""
    import uvicorn

    from maskwatch.serve.api import create_app
    from maskwatch.serve.store import Store

    app = create_app(Store(store).open(), lambda: [], node="bench")
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off")


class Server:
    def __init__(self, store: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, __file__, "--_serve", store, str(self.port)]
        self.process = subprocess.Popen(command, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server on {self.url} did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


def hammer(server: Server, run: Run, seconds: float, request, retry_after: float = 1.0) -> Run:
    """``run.clients`` threads call ``request(client)`` until ``seconds`` have passed."""
    lock, stop = threading.Lock(), time.monotonic() + seconds
    run.rss_before_mb = rss_mb(server.process.pid)

    def client_loop() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            while time.monotonic() < stop:
                started = time.perf_counter()
                try:
                    status = request(client).status_code
                except httpx.HTTPError:
                    status = 0
                elapsed = time.perf_counter() - started
                with lock:
                    if 200 <= status < 300:
                        run.ok.append(elapsed)
                    elif status == 429:
                        run.refused += 1
                    else:
                        run.errors += 1
                if status == 429:
                    time.sleep(retry_after)  # a well-behaved client waits as told (--retry-after to try others)

    threads = [threading.Thread(target=client_loop) for _ in range(run.clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run.seconds = time.monotonic() - began
    run.rss_after_mb = rss_mb(server.process.pid)
    return run


def detect_runs(store: str, clients: list[int], seconds: float, retry_after: float) -> list[Run]:
    from maskwatch.runtime.assets import SAMPLE_IMAGE, asset_path

    image = asset_path(SAMPLE_IMAGE).read_bytes()
    server = Server(store)
    try:
        post = lambda c: c.post("/api/detect", files={"file": ("astronaut.jpg", image, "image/jpeg")})  # noqa: E731
        hammer(server, Run("warm-up", 2), 3.0, post)
        return [hammer(server, Run("POST /api/detect", n), seconds, post, retry_after) for n in clients]
    finally:
        server.stop()


def seed_events(store_url: str, n: int) -> None:
    """``n`` events over 30 days, 4 cameras, both labels (bulk insert, as the writer would have left them)."""
    import sqlalchemy as sa

    from maskwatch.serve.store import Store, events

    store = Store(store_url).open()
    rng = np.random.default_rng(0)
    start = time.time() - 30 * 86400
    with store.engine.begin() as conn:
        for first in range(0, n, 5000):
            rows = []
            for i in range(first, min(n, first + 5000)):
                t = start + float(rng.uniform(0, 30 * 86400))
                rows.append({
                    "id": f"cam{i % 4}-{i:08x}", "camera": f"cam{i % 4}", "node": "bench", "track_id": i,
                    "label": ("without_mask", "mask_incorrect")[i % 2], "score": 0.9, "start_time": t,
                    "end_time": t + 5, "last_seen": t + 5, "box": [10.0, 20.0, 90.0, 120.0], "snapshot": None,
                })  # fmt: skip
            conn.execute(sa.insert(events), rows)
    with store.engine.begin() as conn:  # fresh statistics, as autovacuum (PostgreSQL) would soon have after a bulk load
        conn.execute(sa.text("ANALYZE maskwatch_events" if store_url.startswith("postgres") else "ANALYZE"))
    store.close()


def events_run(name: str, store_url: str, clients: int, seconds: float) -> Run:
    server = Server(store_url)
    queries = [
        {},
        {"camera": "cam2"},
        {"label": "mask_incorrect"},
        {"since": time.time() - 86400},
        {"camera": "cam1", "limit": 500},
    ]
    counter = iter(range(10**9))
    try:
        get = lambda c: c.get("/api/events", params=queries[next(counter) % len(queries)])  # noqa: E731
        hammer(server, Run("warm-up", 1), 1.0, get)
        return hammer(server, Run(f"GET /api/events ({name})", clients), seconds, get)
    finally:
        server.stop()


def postgres_database() -> tuple[str, callable] | None:
    try:
        import psycopg

        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except Exception as error:  # noqa: BLE001 - absent: say so and go on with SQLite
        Console(stderr=True).print(f"PostgreSQL skipped ({str(error).splitlines()[0]})")
        return None
    name = f"maskwatch_bench_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()

    return f"postgresql://postgres@127.0.0.1:5432/{name}", drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="per run")
    parser.add_argument("--clients", type=int, nargs="*", default=[1, 4, 16], help="concurrent /api/detect clients")
    parser.add_argument("--events", type=int, default=100_000, help="stored events for the /api/events runs")
    parser.add_argument("--event-clients", type=int, default=4)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--retry-after", type=float, default=1.0, help="seconds a client waits after a 429 (the server says 1)")
    parser.add_argument("--_serve", nargs=2, metavar=("STORE", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._serve:  # noqa: SLF001
        serve(args._serve[0], int(args._serve[1]))  # noqa: SLF001
        return
    runs: list[Run] = []
    with tempfile.TemporaryDirectory() as folder:
        sqlite = f"sqlite:///{Path(folder) / 'bench.db'}"
        if args.clients:
            runs += detect_runs(f"sqlite:///{Path(folder) / 'detect.db'}", args.clients, args.seconds, args.retry_after)
        if args.events:
            seed_events(sqlite, args.events)
            runs.append(events_run(f"SQLite, {args.events:,} events", sqlite, args.event_clients, args.seconds))
            pg = None if args.no_postgres else postgres_database()
            if pg is not None:
                url, drop = pg
                try:
                    seed_events(url, args.events)
                    runs.append(events_run(f"PostgreSQL, {args.events:,} events", url, args.event_clients, args.seconds))
                finally:
                    drop()
    table = Table(title=f"maskwatch serve HTTP load, loopback, {os.cpu_count()} CPUs, {args.seconds:g} s per run")
    for column in ("route", "clients", "ok req/s", "p50 / p99 ms", "429 (cap)", "errors", "server RSS MB before -> after"):
        table.add_column(column)
    for run in runs:
        table.add_row(*run.row())
    Console(width=200).print(table)
    print("\n| route | clients | ok req/s | p50 / p99 ms | 429 (cap) | errors | server RSS MB before -> after |")
    print("|---|---|---|---|---|---|---|")
    for run in runs:
        print("| " + " | ".join(run.row()) + " |")


if __name__ == "__main__":
    main()
