"""What an audit reports: findings per check, a privacy summary per client, a decryption summary.

All are small frozen value objects; ``AuditReport.to_json`` is the stable, documented JSON schema
(``schema`` = 1, see the README's compliance section) and ``to_markdown`` the human report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

JSON_SCHEMA = 1


class Status(StrEnum):
    """Outcome of one check: ``pass``, ``warn`` (suspicious, fails only with --strict) or ``fail``."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Finding:
    """One check on one subject (a log, a client, a decryption) with where the evidence is."""

    check: str
    status: Status
    subject: str
    message: str
    location: str = ""

    def to_json(self) -> dict[str, str]:
        """The finding as a JSON object."""
        return {
            "check": self.check,
            "status": self.status.value,
            "subject": self.subject,
            "message": self.message,
            "location": self.location,
        }


@dataclass(frozen=True)
class ClientPrivacy:
    """Privacy spent by one data owner, as claimed in its ledger and as recomputed from its events."""

    identity: str
    ledger: str
    dp_runs: int
    non_private_runs: int
    epsilon_claimed: float
    epsilon_prv: float
    epsilon_rdp: float
    delta: float
    budget: float | None
    announced_seq: int | None = None
    """The ledger seq of the client's last head announcement recorded by a server run (anchors), if any."""
    epsilon_announced: float | None = None
    """ε spent (claimed or recomputed, the larger) by the DP runs up to and including ``announced_seq``."""

    @property
    def epsilon_spent(self) -> float:
        """The larger of claimed and recomputed (PRV) ε: what the budget is charged."""
        return max(self.epsilon_claimed, self.epsilon_prv)

    @property
    def remaining(self) -> float | None:
        """Budget left, or None when no budget is known."""
        return None if self.budget is None else self.budget - self.epsilon_spent

    def announced_text(self) -> str:
        """ε at the last announcement and its seq, for tables (``–`` when no run recorded one)."""
        if self.epsilon_announced is None:
            return "–"
        return f"{self.epsilon_announced:.4g} (seq {self.announced_seq})"

    def to_json(self) -> dict[str, Any]:
        """The summary as a JSON object (ε rounded to 6 decimals)."""
        return {
            "identity": self.identity,
            "ledger": self.ledger,
            "dp_runs": self.dp_runs,
            "non_private_runs": self.non_private_runs,
            "epsilon_claimed": round(self.epsilon_claimed, 6),
            "epsilon_prv": round(self.epsilon_prv, 6),
            "epsilon_rdp": round(self.epsilon_rdp, 6),
            "delta": self.delta,
            "budget": self.budget,
            "remaining": None if self.remaining is None else round(self.remaining, 6),
            "announced_seq": self.announced_seq,
            "epsilon_announced": None if self.epsilon_announced is None else round(self.epsilon_announced, 6),
        }


@dataclass(frozen=True)
class DecryptionSummary:
    """What a decryption log shows: how many fused vectors were decrypted and under what policy."""

    log: str
    decryptions: int
    min_contributors: int | None
    max_weight: float | None
    policies: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """The summary as a JSON object."""
        return {
            "log": self.log,
            "decryptions": self.decryptions,
            "min_contributors": self.min_contributors,
            "max_weight": self.max_weight,
            "policies": list(self.policies),
        }


@dataclass(frozen=True)
class AuditReport:
    """Everything one audit found; ``passed`` is False on any failure (or warning, when strict)."""

    paths: tuple[str, ...]
    strict: bool
    findings: tuple[Finding, ...]
    clients: tuple[ClientPrivacy, ...] = ()
    decryptions: tuple[DecryptionSummary, ...] = ()
    logs: tuple[dict[str, Any], ...] = field(default=())

    @property
    def failures(self) -> tuple[Finding, ...]:
        """Findings that fail the audit (warnings too when strict)."""
        bad = {Status.FAIL, Status.WARN} if self.strict else {Status.FAIL}
        return tuple(f for f in self.findings if f.status in bad)

    @property
    def passed(self) -> bool:
        """Whether every check passed."""
        return not self.failures

    def to_json(self, version: str) -> dict[str, Any]:
        """The stable JSON report (schema 1)."""
        return {
            "schema": JSON_SCHEMA,
            "tool": f"secure-mor audit {version}",
            "passed": self.passed,
            "strict": self.strict,
            "paths": list(self.paths),
            "logs": list(self.logs),
            "clients": [c.to_json() for c in self.clients],
            "decryptions": [d.to_json() for d in self.decryptions],
            "findings": [f.to_json() for f in self.findings],
        }

    def to_markdown(self, version: str) -> str:
        """A human-readable report for a compliance file."""
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [
            "# secure-mor privacy and decryption audit",
            "",
            f"**Result: {verdict}** ({len(self.failures)} failing finding(s)"
            f"{', strict' if self.strict else ''})"
            f" · secure-mor {version} · inputs: {', '.join(f'`{p}`' for p in self.paths)}",
            "",
            "## Privacy budget per data owner",
            "",
            "| client | DP runs | ε claimed | ε recomputed (PRV) | ε (RDP) | δ | budget | remaining "
            "| ε at last announcement |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for c in self.clients:
            budget = "–" if c.budget is None else f"{c.budget:.3g}"
            remaining = "–" if c.remaining is None else f"{c.remaining:.3g}"
            lines.append(
                f"| {c.identity} | {c.dp_runs} | {c.epsilon_claimed:.4g} | {c.epsilon_prv:.4g} | "
                f"{c.epsilon_rdp:.4g} | {c.delta:.2g} | {budget} | {remaining} | {c.announced_text()} |"
            )
        lines += [
            "",
            "## Decryptions",
            "",
            "| log | decryptions | fewest contributors | largest weight | policy |",
        ]
        lines.append("|---|---|---|---|---|")
        for d in self.decryptions:
            fewest = "–" if d.min_contributors is None else str(d.min_contributors)
            largest = "–" if d.max_weight is None else f"{d.max_weight:.4g}"
            lines.append(
                f"| `{d.log}` | {d.decryptions} | {fewest} | {largest} | {'; '.join(d.policies) or '–'} |"
            )
        lines += [
            "",
            "## Checks",
            "",
            "| status | check | subject | finding | where |",
            "|---|---|---|---|---|",
        ]
        for f in self.findings:
            lines.append(f"| {f.status.value} | {f.check} | {f.subject} | {f.message} | {f.location} |")
        return "\n".join(lines) + "\n"
