"""The `qortex` command line."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup

from qortex.cli import audit, keys, tenants, users
from qortex.cli._common import fail
from qortex.cli.eval import eval_command
from qortex.cli.predict import predict
from qortex.cli.server import init, migrate, serve
from qortex.observability.logging import configure_logging


class OneLineUsageErrors(TyperGroup):
    """Usage errors (a bad option value, a missing argument) and aborts as one `error:` line, like every
    other failure, instead of Typer's boxed panel or "Aborted."."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, windows_expand_args, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except typer.TyperException as error:  # Typer's own copy of Click's UsageError and kin
            message = error.format_message()
            if message:  # empty for a bare group, whose help Typer has printed instead
                context = getattr(error, "ctx", None)
                help_hint = f" (see `{context.command_path} --help`)" if context is not None else ""
                fail(message + help_hint)
            sys.exit(error.exit_code)
        except typer.Abort:
            sys.exit(fail("aborted").exit_code)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(cls=OneLineUsageErrors, no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)


@app.callback()
def main() -> None:
    """Qortex: self-hosted, multi-tenant time-series predictions."""
    # A command answers on standard output and fails with one `error:` line on standard error: library
    # warnings (say, storage_unavailable before that line) would break both. `qortex serve` configures its
    # own server log.
    configure_logging("error", to_stderr=True)


app.command("serve")(serve)
app.command("migrate")(migrate)
app.command("init")(init)
app.command("predict")(predict)
app.command("eval")(eval_command)
app.add_typer(tenants.app, name="tenants")
app.add_typer(keys.app, name="keys")
app.add_typer(users.app, name="users")
app.add_typer(audit.app, name="audit")
