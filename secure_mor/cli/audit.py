"""``secure-mor audit``: the offline privacy-budget and decryption audit for compliance officers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from secure_mor import __version__
from secure_mor.cli.app import console
from secure_mor.errors import SecureMorError

if TYPE_CHECKING:
    from secure_mor.audit import AuditReport

STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red"}


def audit_command(
    paths: list[Path] = typer.Argument(
        ..., help="Run or kit folders, or log files (privacy ledgers, decryption logs)."
    ),
    budget: Path | None = typer.Option(
        None,
        "--budget",
        help='TOML file with a \\[budgets] table, e.g. "client:alice" = 3.0 (overrides the ledger).',
    ),
    json_out: Path | None = typer.Option(
        None, "--json", help="Write the report as JSON (schema 1) to this file."
    ),
    markdown_out: Path | None = typer.Option(
        None, "--markdown", help="Write the report as Markdown to this file."
    ),
    strict: bool = typer.Option(False, "--strict", help="Fail on warnings too (e.g. RDP and PRV disagree)."),
) -> int:
    """Verify signed logs, recompute ε per client, check budgets and every decryption against the policy.

    Pass the server's run folder too: its anchors show whether the key holder's log and the clients'
    ledgers are whole (a cut-back log still verifies on its own); "ε announced" is the ε a client had
    spent when it last announced its ledger's head to the server.

    Exit status: 0 when every check passes, 1 on any violation, 2 when the input is unusable.
    """
    from secure_mor.audit import Auditor, load_budgets  # opacus: load only when run

    auditor = Auditor(budgets=load_budgets(budget) if budget else {}, strict=strict)
    report = auditor.run(paths)
    console.print(_clients(report))
    console.print(_checks(report))
    verdict = (
        "[green]PASSED[/]" if report.passed else f"[bold red]FAILED[/] ({len(report.failures)} finding(s))"
    )
    console.print(f"audit {verdict}")
    outputs = {json_out: json.dumps(report.to_json(__version__), indent=2) + "\n"} if json_out else {}
    if markdown_out is not None:
        outputs[markdown_out] = report.to_markdown(__version__)
    for path, text in outputs.items():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        except OSError as error:
            raise SecureMorError(f"cannot write {path}: {error}") from None
        console.print(f"wrote {path}")
    return 0 if report.passed else 1


def _clients(report: AuditReport) -> Table:
    table = Table(title="privacy budget per data owner")
    columns = ("client", "DP runs", "ε claimed", "ε PRV", "ε RDP", "δ", "budget", "remaining", "ε announced")
    for column in columns:
        table.add_column(
            column, justify="left" if column == "client" else "right", no_wrap=column == "client"
        )
    for c in report.clients:
        table.add_row(
            c.identity,
            str(c.dp_runs),
            f"{c.epsilon_claimed:.4g}",
            f"{c.epsilon_prv:.4g}",
            f"{c.epsilon_rdp:.4g}",
            f"{c.delta:.2g}",
            "–" if c.budget is None else f"{c.budget:.4g}",
            "–" if c.remaining is None else f"{c.remaining:.4g}",
            c.announced_text(),
        )
    return table


def _checks(report: AuditReport) -> Table:
    table = Table(title="checks")
    for column in ("status", "check", "subject", "finding"):
        table.add_column(column)
    for f in report.findings:
        table.add_row(
            f"[{STYLE[f.status.value]}]{f.status.value}[/]",
            f.check,
            f.subject,
            f"{f.message} {f.location}".strip(),
        )
    return table
