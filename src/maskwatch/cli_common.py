"""What every command module shares: the exit statuses and the one way to stop with an error line.

Kept apart from ``cli.py`` so that the command modules it registers (``cli_train``, ``cli_explain``) can use them
without importing ``cli`` back.
"""

from __future__ import annotations

import logging
from typing import NoReturn

import typer

log = logging.getLogger("maskwatch")

#: Exit status: every input succeeded / some inputs failed (the run went on) / nothing succeeded or nothing could run.
EXIT_OK, EXIT_SOME_FAILED, EXIT_ALL_FAILED = 0, 1, 2


def fail(message: str) -> NoReturn:
    """One error line, no traceback, and the 'nothing done' exit status."""
    log.error(message)
    raise typer.Exit(code=EXIT_ALL_FAILED)


def require_extra(extra: str) -> None:
    """Stop with the install command to run when ``extra`` (e.g. ``train``) is not installed."""
    from maskwatch.extras import missing_extra

    problem = missing_extra(extra)
    if problem:
        fail(problem)
