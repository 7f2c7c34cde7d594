"""The ``secure-mor`` command line: one Typer app, one module per command group.

``main`` is the console-script entry point: it runs the app and turns every ``SecureMorError`` into a
one-line message on stderr and a non-zero exit status, so that a user never sees a Python traceback for
a mistake of theirs (a programming error still shows one, as it should).
"""

from __future__ import annotations

import sys

import typer

from secure_mor.cli import audit, base, data, evaluate
from secure_mor.cli import client as client_cli
from secure_mor.cli import experiment as experiment_cli
from secure_mor.cli import init as init_cli
from secure_mor.cli import keyholder as keyholder_cli
from secure_mor.cli import server as server_cli
from secure_mor.cli import simulate as simulate_cli
from secure_mor.cli.app import app, console_err
from secure_mor.errors import SecureMorError

__all__ = ["app", "main"]

app.add_typer(base.app, name="base")
app.add_typer(data.app, name="data")
app.command("eval")(evaluate.eval_command)
app.command("init")(init_cli.init_command)
app.add_typer(keyholder_cli.app, name="keyholder")
app.add_typer(client_cli.app, name="client")
app.command("audit")(audit.audit_command)
app.add_typer(server_cli.app, name="server")
app.command("simulate")(simulate_cli.simulate_command)
app.command("experiment")(experiment_cli.experiment_command)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``) and return the exit status."""
    try:
        result = app(args=argv, prog_name="secure-mor", standalone_mode=False)
    except (typer.Abort, KeyboardInterrupt):
        console_err.print("[yellow]interrupted[/]")
        return 130
    except SecureMorError as error:
        console_err.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        return error.exit_code
    except typer.TyperException as error:  # bad arguments: show the usage line and the reason
        error.show()  # type: ignore[attr-defined]
        return int(error.exit_code)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
