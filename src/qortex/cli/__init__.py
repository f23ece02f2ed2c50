"""The `qortex` command line."""

from __future__ import annotations

import typer

from qortex.cli import keys, tenants, users
from qortex.cli.eval import eval_command
from qortex.cli.predict import predict
from qortex.cli.server import init, migrate, serve

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)


@app.callback()
def main() -> None:
    """Qortex: self-hosted, multi-tenant time-series predictions."""


app.command("serve")(serve)
app.command("migrate")(migrate)
app.command("init")(init)
app.command("predict")(predict)
app.command("eval")(eval_command)
app.add_typer(tenants.app, name="tenants")
app.add_typer(keys.app, name="keys")
app.add_typer(users.app, name="users")
