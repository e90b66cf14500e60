"""``maskwatch serve`` and ``maskwatch events``: the camera service, whose dependencies are the ``serve`` extra.

Everything from ``maskwatch.serve`` is imported inside the commands, so the rest of the CLI (and the
runtime) works, and stays light, without the extra.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import typer

log = logging.getLogger("maskwatch")

INSTALL_HINT = 'pip install "maskwatch[serve]"'


def _need_serve_extra(fail: Callable[[str], None]) -> None:
    """One line naming the install command when a dependency of the extra is missing."""
    import importlib.util

    modules = ("fastapi", "uvicorn", "sqlalchemy", "paho", "pydantic", "yaml", "prometheus_client", "python_multipart")
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        fail(f"maskwatch serve needs the serve extra (missing: {', '.join(missing)}); install it with: {INSTALL_HINT}")


def register(app: typer.Typer, fail: Callable[[str], None]) -> None:
    @app.command()
    def serve(
        config: Path = typer.Option(
            ..., "--config", help="YAML config: cameras, events, store, snapshots, mqtt, webhooks, http."
        ),
        check: bool = typer.Option(False, "--check", help="Only validate the config and exit."),
        token: str | None = typer.Option(
            None,
            "--token",
            envvar="MASKWATCH_TOKEN",
            show_envvar=True,
            show_default=False,
            help="HTTP API token (overrides http.token): callers send Authorization: Bearer TOKEN, or log in at /login.",
        ),
        insecure: bool = typer.Option(
            False, "--insecure", help="Allow http.host other than loopback without a token (anyone on the network gets in)."
        ),
    ) -> None:
        """Watch cameras, raise one event per non-compliant person, store and deliver them (until SIGINT/SIGTERM)."""
        _need_serve_extra(fail)
        from maskwatch.serve.config import ConfigError, exposure_problem, load_config, with_token

        try:
            settings = with_token(load_config(config), token)
        except ConfigError as error:
            fail(str(error))
        problem = exposure_problem(settings.http, insecure=insecure)
        if problem:
            fail(problem)
        if check:
            cameras = ", ".join(c.name for c in settings.resolved_cameras())
            from maskwatch.serve.store import redacted

            typer.echo(f"{config}: ok ({len(settings.cameras)} camera(s): {cameras}; store {redacted(settings.store)})")
            return
        from maskwatch.runtime.classifier import ModelFileError
        from maskwatch.serve.service import Service
        from maskwatch.serve.store import StoreError

        try:
            service = Service(settings, insecure=insecure).start()
        except (StoreError, ModelFileError, RuntimeError) as error:
            fail(str(error))
        service.run()

    @app.command()
    def events(
        store: str = typer.Option("sqlite:///maskwatch.db", "--store", help="Store URL (sqlite:///FILE or postgresql://...)."),
        camera: str | None = typer.Option(None, "--camera", help="Only this camera."),
        label: str | None = typer.Option(None, "--label", help="Only this label (without_mask, mask_incorrect, ...)."),
        since: str | None = typer.Option(None, "--since", help="ISO 8601 time (UTC if no zone) or epoch seconds."),
        limit: int | None = typer.Option(None, "--limit", help="At most this many, newest first (default: all)."),
        as_json: bool = typer.Option(False, "--json", help="JSON Lines, one event per line."),
    ) -> None:
        """List stored events, newest first."""
        _need_serve_extra(fail)
        from maskwatch.labels import UnknownLabelError, canonical_label
        from maskwatch.serve.store import Store, StoreError, parse_since

        try:
            since_t = parse_since(since)
            label = canonical_label(label) if label else None
            if store.startswith("sqlite:///") and not Path(store.removeprefix("sqlite:///")).is_file():
                fail(f"store {store!r}: no such database file")
            rows = Store(store).open().query_events(camera=camera, label=label, since=since_t, limit=limit)
        except (ValueError, UnknownLabelError, StoreError) as error:
            fail(str(error))
        if as_json:
            for row in rows:
                typer.echo(json.dumps(row))
            return
        typer.echo(f"{'start (UTC)':<25} {'end':<25} {'camera':<12} {'label':<15} {'score':>5}  id")
        for row in rows:
            typer.echo(
                f"{row['start_time']:<25} {row['end_time'] or 'open':<25} {row['camera']:<12} {row['label']:<15} "
                f"{row['score']:>5.2f}  {row['id']}"
            )
        log.info("%d event(s)", len(rows))
