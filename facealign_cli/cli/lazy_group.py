"""A click group whose subcommands are imported only when invoked (``facealign --help`` stays
instant: it lists them from their one-line help without importing their modules).

Only ``click`` and the standard library are imported here.
"""

from __future__ import annotations

import importlib
import importlib.util

import click


class LazyGroup(click.Group):
    """A click group whose ``lazy_commands`` are imported only when invoked.

    Args:
        lazy_commands: command name -> ``(module name, one-line help)``; the module defines a
            ``click.Command`` of that name.

    A lazy command whose module is not installed is simply not listed; invoking it gives a
    usage error. Its help line in ``facealign --help`` comes from ``lazy_commands``.
    """

    def __init__(self, *args, lazy_commands: dict[str, tuple[str, str]] | None = None, **kw):
        super().__init__(*args, **kw)
        self.lazy_commands = dict(lazy_commands or {})

    def _available(self, name: str) -> bool:
        try:
            return importlib.util.find_spec(self.lazy_commands[name][0]) is not None
        except (ImportError, ValueError):
            return False

    def list_commands(self, ctx):
        lazy = [n for n in self.lazy_commands if n not in self.commands and self._available(n)]
        return sorted(list(self.commands) + lazy)

    def get_command(self, ctx, cmd_name):
        cmd = self.commands.get(cmd_name)
        if cmd is not None or cmd_name not in self.lazy_commands or not self._available(cmd_name):
            return cmd
        module_name = self.lazy_commands[cmd_name][0]
        module = importlib.import_module(module_name)
        cmd = getattr(module, cmd_name, None)
        if not isinstance(cmd, click.Command):
            found = [v for v in vars(module).values()
                     if isinstance(v, click.Command) and v.name == cmd_name]
            if not found:
                raise RuntimeError(f"{module_name} defines no click command named {cmd_name!r}")
            cmd = found[0]
        self.commands[cmd_name] = cmd
        return cmd

    def format_commands(self, ctx, formatter):
        rows = []
        for name in self.list_commands(ctx):
            if name in self.commands:
                cmd = self.commands[name]
                if cmd.hidden:
                    continue
                rows.append((name, cmd.get_short_help_str(limit=formatter.width - 6 - len(name))))
            else:
                rows.append((name, self.lazy_commands[name][1]))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
