"""A Typer app that registers its heavy command groups only when the command line may use them.

Building the ``train`` command's options imports pydantic and the training config (0.3-1 s on a 2-core CPU), and
Typer builds every command's options at each start; ``maskwatch detect one.jpg`` needs none of that. So when the
command named on the line is one of the app's own (registered in ``cli.py``), the deferred groups are skipped;
anything else (``--help``, another command, a typo to suggest a fix for, tests' ``CliRunner``) registers them all.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import typer


def first_command(argv: list[str]) -> str | None:
    """The first word that is not an option (the top-level options take no values)."""
    return next((word for word in argv if not word.startswith("-")), None)


class LazyTyper(typer.Typer):
    """``typer.Typer`` plus :meth:`defer`: registrars run the first time the command list is read, unless this
    process was started for one of the commands registered directly."""

    def __init__(self, *args: Any, **kwargs: Any):
        self._deferred: list[Callable[[], None]] = []
        self._own: set[str] | None = None
        self._light = False
        super().__init__(*args, **kwargs)

    @property
    def registered_commands(self) -> list:
        if self._deferred and not self._light:
            deferred, self._deferred = self._deferred, []
            for register in deferred:
                register()
        return self._commands

    @registered_commands.setter
    def registered_commands(self, value: list) -> None:
        self._commands = value

    def defer(self, register: Callable[[], None]) -> None:
        """Run ``register`` (which adds commands to this app) only when they may be needed."""
        if self._own is None:
            self._own = {info.name or info.callback.__name__.replace("_", "-") for info in self._commands}
        self._deferred.append(register)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        argv = kwargs.get("args")
        argv = list(sys.argv[1:] if argv is None else argv)
        self._light = first_command(argv) in (self._own or set())
        return super().__call__(*args, **kwargs)
