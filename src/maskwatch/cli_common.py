"""What every command module shares: the exit statuses and the one way to stop with an error line.

Kept apart from ``cli.py`` so that the command modules it registers (``cli_train``, ``cli_explain``) can use them
without importing ``cli`` back.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
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


def refuse_json_over_inputs(json_out: Path | None, *inputs: tuple[str, Path | None]) -> None:
    """One line and exit 2 when ``--json`` would replace a file the command reads (a manifest, ``--predictions``,
    ``--splits``, a ``--relabel`` list) or lie in a folder it reads labels from (VOC annotations)."""
    if json_out is None:
        return
    for option, source in inputs:
        if source is None:
            continue
        if source.is_dir():
            inside = Path(os.path.realpath(json_out)).is_relative_to(os.path.realpath(source))
            if inside:
                fail(f"--json {json_out}: lies in {source}, the {option} folder this command reads; choose another path")
        elif json_out.exists() and source.exists() and os.path.samefile(json_out, source):
            fail(f"--json {json_out}: is {source}, the {option} file this command reads; refusing to overwrite it")
