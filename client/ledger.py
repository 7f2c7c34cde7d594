"""The client's privacy ledger: one signed, hash-chained entry per training run on its private pairs.

It is a ``secure_mor.crypto.signed_log.SignedLog`` (the one signed-log format; see that module for the
line format, hashing and signatures) written by the client's identity ``client:<name>`` with the
Ed25519 key of its kit. Entry kinds and their payloads (schema 1) — an auditor recomputes ε from them:

``dp_training_run`` (a run under DP-SGD)::

    schema              1
    privacy_unit        "preference_pair" (chosen and rejected of one pair are one sample)
    dataset_size        number of training pairs n
    noise_multiplier    σ of the Gaussian noise (std = σ · max_grad_norm)
    sample_rate         Poisson sampling rate q (expected batch / n)
    steps               optimizer steps taken (each one a Poisson-sampled Gaussian mechanism)
    events              [[σ, q, steps], …]: the accountant's history, in order (here one item)
    max_grad_norm       per-pair clipping norm C
    delta               δ of this run
    accountant          "prv" (Opacus' PRV accountant; the ε below is its answer for the events)
    opacus_version      e.g. "1.6.0"
    epsilon             ε claimed for this run at δ
    epsilon_requested   the per-run ε the noise was calibrated for
    epsilon_budget      the client's total budget when the run was recorded
    epsilon_spent_before  Σ ε of the earlier dp_training_run entries
    architecture, grad_sample_mode   what was trained and how per-pair gradients were computed

``non_private_run`` (``--epsilon inf``, for comparison): ``schema``, ``privacy_unit``,
``dataset_size``, ``architecture``, ``steps``, ``epsilon`` = null. Such a model is marked non-private
and the scoring agent refuses to use it (unless ``agent.allow_non_private``); it spends no budget.

Budget: the spent ε is the SUM of the recorded ε (basic composition of (ε_i, δ_i)-DP runs on the same
data gives (Σε_i, Σδ_i)-DP; conservative). A run with Σ + requested > budget is refused before training.

Head: the scoring agent announces the ledger's last entry (seq and line hash, signed: ``ledger_head``)
in its Hello; the server keeps the announcement, so an audit can later catch a ledger cut back or
rewritten below it (a hash chain alone cannot: a truncated chain still verifies).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import opacus
from opacus.accountants import PRVAccountant

from secure_mor.anchors import LedgerHead
from secure_mor.client.errors import BudgetExceededError
from secure_mor.crypto.signed_log import LogEntry, SignedLog, read_log
from secure_mor.crypto.signing import SigningKey, VerifyKey

DP_RUN = "dp_training_run"
NON_PRIVATE_RUN = "non_private_run"
PRIVACY_UNIT = "preference_pair"
SCHEMA = 1


@dataclass(frozen=True)
class DpEvent:
    """``steps`` Poisson-sampled (rate ``sample_rate``) Gaussian mechanisms of ``noise_multiplier``."""

    noise_multiplier: float
    sample_rate: float
    steps: int


@dataclass(frozen=True)
class DpRun:
    """What one DP training run records (the ``dp_training_run`` payload less the budget fields)."""

    dataset_size: int
    events: tuple[DpEvent, ...]
    max_grad_norm: float
    delta: float
    epsilon: float
    epsilon_requested: float
    architecture: str
    grad_sample_mode: str

    def payload(self, budget: float, spent_before: float) -> dict[str, Any]:
        """The ledger payload (schema 1)."""
        first = self.events[0] if self.events else DpEvent(0.0, 0.0, 0)
        return {
            "schema": SCHEMA,
            "privacy_unit": PRIVACY_UNIT,
            "dataset_size": self.dataset_size,
            "noise_multiplier": first.noise_multiplier,
            "sample_rate": first.sample_rate,
            "steps": sum(e.steps for e in self.events),
            "events": [[e.noise_multiplier, e.sample_rate, e.steps] for e in self.events],
            "max_grad_norm": self.max_grad_norm,
            "delta": self.delta,
            "accountant": "prv",
            "opacus_version": opacus.__version__,
            "epsilon": self.epsilon,
            "epsilon_requested": self.epsilon_requested,
            "epsilon_budget": budget,
            "epsilon_spent_before": spent_before,
            "architecture": self.architecture,
            "grad_sample_mode": self.grad_sample_mode,
        }


def prv_epsilon(events: Sequence[DpEvent], delta: float) -> float:
    """ε at ``delta`` of the composed events under a fresh PRV accountant (0 for no steps)."""
    history = [(e.noise_multiplier, e.sample_rate, e.steps) for e in events if e.steps > 0]
    if not history:
        return 0.0
    accountant = PRVAccountant()
    accountant.history = history
    return float(accountant.get_epsilon(delta))


def recompute_epsilon(payload: Mapping[str, Any]) -> float:
    """Recompute a ``dp_training_run`` entry's ε from its recorded events and δ (what an audit does)."""
    events = [DpEvent(float(s), float(q), int(t)) for s, q, t in payload["events"]]
    return prv_epsilon(events, float(payload["delta"]))


def ledger_head(path: Path, signer: SigningKey) -> LedgerHead | None:
    """The signed head of the ledger at ``path`` (its last entry), or ``None`` when it has no entry yet.

    The whole ledger is verified first (``LogIntegrityError`` naming the file and line if it does not):
    a client never vouches for a ledger it cannot verify itself.
    """
    if not path.exists():
        return None
    entries = read_log(path, {signer.identity: signer.public})
    if not entries:
        return None
    return LedgerHead.sign(signer, entries[-1].seq, entries[-1].line_hash)


class PrivacyLedger:
    """The client's ledger at ``path``, signed by ``signer``; verified on open (never appended if broken)."""

    def __init__(self, path: Path, signer: SigningKey, keys: Mapping[str, VerifyKey] | None = None) -> None:
        self._log = SignedLog(path, signer, keys)

    @property
    def entries(self) -> tuple[LogEntry, ...]:
        """Every verified entry, oldest first."""
        return self._log.entries

    @property
    def spent(self) -> float:
        """Σ ε of the recorded DP runs (basic composition)."""
        return math.fsum(float(e.payload["epsilon"]) for e in self.entries if e.kind == DP_RUN)

    def check(self, requested: float, budget: float) -> None:
        """Refuse (``BudgetExceededError``) a run of ε ``requested`` that would go past ``budget``."""
        spent = self.spent
        if spent + requested > budget + 1e-9:
            raise BudgetExceededError(
                f"privacy budget exceeded: spent ε = {spent:.4g}, requested ε = {requested:.4g}, "
                f"budget ε = {budget:.4g} (spent + requested = {spent + requested:.4g}); "
                "nothing was trained. Lower privacy.epsilon or stop training on this data."
            )

    def record_dp(self, run: DpRun, budget: float) -> LogEntry:
        """Append a ``dp_training_run`` entry."""
        return self._log.append(DP_RUN, run.payload(budget, self.spent))

    def record_non_private(self, dataset_size: int, steps: int, architecture: str) -> LogEntry:
        """Append a ``non_private_run`` entry (training without DP, for comparison)."""
        payload = {
            "schema": SCHEMA,
            "privacy_unit": PRIVACY_UNIT,
            "dataset_size": dataset_size,
            "steps": steps,
            "architecture": architecture,
            "epsilon": None,
        }
        return self._log.append(NON_PRIVATE_RUN, payload)

    def close(self) -> None:
        """Close the log file."""
        self._log.close()


__all__ = ["DpEvent", "DpRun", "PrivacyLedger", "ledger_head", "prv_epsilon", "recompute_epsilon"]
