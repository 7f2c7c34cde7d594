"""The audit's checks: each reads verified log entries and returns findings (and a summary).

Log integrity (chain, signatures, order, gaps, duplicates, torn lines) is verified by
``secure_mor.crypto.signed_log.read_log`` — the one implementation of the format — before any of these
run; the checks here are about what the entries say.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from secure_mor.audit.accounting import epsilon_prv, epsilon_rdp, parse_events
from secure_mor.audit.findings import ClientPrivacy, DecryptionSummary, Finding, Status
from secure_mor.crypto.ckks_params import MAX_BITS_128
from secure_mor.crypto.signed_log import LogEntry

CLAIM_TOLERANCE = 1e-3
"""Relative slack allowed between a claimed ε and its PRV recomputation."""
ACCOUNTANT_TOLERANCE = 0.3
"""Relative disagreement between the RDP and PRV ε above which a warning is raised …"""
ACCOUNTANT_FLOOR = 0.1
"""… when it also exceeds this absolute difference (at tiny ε the RDP bound is loose by design)."""
PRIVACY_UNIT = "preference_pair"


def _where(path: str, entry: LogEntry) -> str:
    return f"{path}:{entry.seq + 1}"


def single_author(path: str, entries: Sequence[LogEntry], expected: str) -> list[Finding]:
    """Every entry of a log must be written by its one owner (e.g. the client, or the key holder)."""
    strangers = [e for e in entries if e.author != expected]
    if strangers:
        first = strangers[0]
        return [
            Finding(
                "log.single_author",
                Status.FAIL,
                expected,
                f"entry by {first.author!r} in the log of {expected!r} ({len(strangers)} such entr(ies))",
                _where(path, first),
            )
        ]
    return [
        Finding(
            "log.single_author", Status.PASS, expected, f"all {len(entries)} entries by {expected!r}", path
        )
    ]


def ledger(
    path: str,
    owner: str,
    entries: Sequence[LogEntry],
    budget_override: float | None,
    announced_seq: int | None = None,
) -> tuple[ClientPrivacy, list[Finding]]:
    """Recompute ε per DP run, compare with the claims and with the budget; summarise the client.

    ``announced_seq``: the seq of the client's last ledger-head announcement a server run recorded (and
    the audit found in this ledger); the summary then also says the ε spent as of that announcement.
    """
    findings: list[Finding] = []
    claimed = prv_total = rdp_total = delta_total = 0.0
    at_announcement: float | None = None
    runs = non_private = 0
    budget = budget_override
    for entry in entries:
        if announced_seq is not None and entry.seq == announced_seq + 1:
            at_announcement = max(claimed, prv_total)  # the runs up to and including the announced head
        payload = entry.payload
        if entry.kind == "non_private_run":
            non_private += 1
            continue
        if entry.kind != "dp_training_run":
            findings.append(
                Finding(
                    "ledger.entry",
                    Status.WARN,
                    owner,
                    f"unknown entry kind {entry.kind!r}",
                    _where(path, entry),
                )
            )
            continue
        runs += 1
        try:
            run = _dp_run(payload)
        except (KeyError, TypeError, ValueError) as error:
            findings.append(
                Finding("ledger.entry", Status.FAIL, owner, f"malformed DP run: {error}", _where(path, entry))
            )
            continue
        events, delta, eps_claimed = run
        prv, rdp = epsilon_prv(events, delta), epsilon_rdp(events, delta)
        claimed, prv_total, rdp_total, delta_total = (
            claimed + eps_claimed,
            prv_total + prv,
            rdp_total + rdp,
            delta_total + delta,
        )
        findings += _claim(owner, eps_claimed, prv, _where(path, entry))
        findings += _accountants(owner, prv, rdp, _where(path, entry))
        if payload.get("privacy_unit") != PRIVACY_UNIT:
            findings.append(
                Finding(
                    "ledger.privacy_unit",
                    Status.FAIL,
                    owner,
                    f"privacy unit is {payload.get('privacy_unit')!r}, expected {PRIVACY_UNIT!r}",
                    _where(path, entry),
                )
            )
        if budget_override is None and isinstance(payload.get("epsilon_budget"), int | float):
            budget = float(payload["epsilon_budget"])
    if announced_seq is not None and announced_seq == len(entries) - 1:
        at_announcement = max(claimed, prv_total)
    summary = ClientPrivacy(
        owner,
        path,
        runs,
        non_private,
        claimed,
        prv_total,
        rdp_total,
        delta_total,
        budget,
        announced_seq if at_announcement is not None else None,
        at_announcement,
    )
    findings.append(_budget(summary))
    return summary, findings


def _dp_run(payload: Mapping[str, Any]) -> tuple[list[tuple[float, float, int]], float, float]:
    events = parse_events(payload["events"])
    delta, epsilon = payload["delta"], payload["epsilon"]
    if not isinstance(delta, int | float) or not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), found {delta!r}")
    if not isinstance(epsilon, int | float) or not math.isfinite(epsilon) or epsilon < 0:
        raise ValueError(f"epsilon must be a finite number ≥ 0, found {epsilon!r}")
    return events, float(delta), float(epsilon)


def _claim(owner: str, claimed: float, prv: float, where: str) -> list[Finding]:
    if claimed < prv * (1 - CLAIM_TOLERANCE) - 1e-9:
        return [
            Finding(
                "ledger.epsilon_claim",
                Status.FAIL,
                owner,
                f"claimed ε = {claimed:.6g} is below the PRV recomputation {prv:.6g} from its events",
                where,
            )
        ]
    return [
        Finding(
            "ledger.epsilon_claim",
            Status.PASS,
            owner,
            f"claimed ε = {claimed:.4g} ≥ recomputed {prv:.4g}",
            where,
        )
    ]


def _accountants(owner: str, prv: float, rdp: float, where: str) -> list[Finding]:
    if abs(rdp - prv) > max(ACCOUNTANT_TOLERANCE * prv, ACCOUNTANT_FLOOR):
        return [
            Finding(
                "ledger.accountants_agree",
                Status.WARN,
                owner,
                f"RDP ε = {rdp:.4g} and PRV ε = {prv:.4g} differ by more than {ACCOUNTANT_TOLERANCE:.0%} "
                f"and {ACCOUNTANT_FLOOR}",
                where,
            )
        ]
    return [Finding("ledger.accountants_agree", Status.PASS, owner, f"PRV {prv:.4g}, RDP {rdp:.4g}", where)]


def _budget(summary: ClientPrivacy) -> Finding:
    if summary.budget is None:
        return Finding(
            "ledger.budget",
            Status.WARN,
            summary.identity,
            "no budget recorded or given (--budget)",
            summary.ledger,
        )
    if summary.epsilon_spent > summary.budget + 1e-9:
        return Finding(
            "ledger.budget",
            Status.FAIL,
            summary.identity,
            f"spent ε = {summary.epsilon_spent:.4g} exceeds the budget ε = {summary.budget:.4g}",
            summary.ledger,
        )
    return Finding(
        "ledger.budget",
        Status.PASS,
        summary.identity,
        f"spent ε = {summary.epsilon_spent:.4g} of {summary.budget:.4g}",
        summary.ledger,
    )


def decryptions(
    path: str, entries: Sequence[LogEntry], configured: Mapping[str, Mapping[str, Any]]
) -> tuple[DecryptionSummary, list[Finding]]:
    """Every decryption must meet its policy (and the configured one): k_min, w_max, one per step id."""
    findings: list[Finding] = []
    seen: dict[str, int] = {}
    contributors: list[int] = []
    weights: list[float] = []
    policies: set[str] = set()
    for entry in entries:
        where, p = _where(path, entry), entry.payload
        step = str(p.get("step_id"))
        try:
            k_min, w_max = _policy(p.get("policy"), configured)
            count, max_weight = len(p["contributors"]), float(p["max_weight"])
        except (KeyError, TypeError, ValueError) as error:
            findings.append(
                Finding("decryption.entry", Status.FAIL, step, f"malformed decryption entry: {error}", where)
            )
            continue
        policies.add(f"k_min={k_min}, w_max={w_max}")
        contributors.append(count)
        weights.append(max_weight)
        if count < k_min:
            findings.append(
                Finding(
                    "decryption.k_min",
                    Status.FAIL,
                    step,
                    f"{count} contributor(s), policy needs ≥ {k_min}",
                    where,
                )
            )
        if max_weight > w_max + 1e-12:
            findings.append(
                Finding(
                    "decryption.w_max",
                    Status.FAIL,
                    step,
                    f"weight {max_weight:.6g} above w_max = {w_max}",
                    where,
                )
            )
        if step in seen:
            findings.append(
                Finding(
                    "decryption.once",
                    Status.FAIL,
                    step,
                    f"step decrypted again (first at line {seen[step]})",
                    where,
                )
            )
        seen.setdefault(step, entry.seq + 1)
        findings += _ckks(step, p.get("ckks"), where)
    if not any(f.status is Status.FAIL for f in findings):
        findings.append(
            Finding(
                "decryption.policy",
                Status.PASS,
                "key holder",
                f"{len(entries)} decryption(s) within policy",
                path,
            )
        )
    summary = DecryptionSummary(
        path,
        len(entries),
        min(contributors, default=None),
        max(weights, default=None),
        tuple(sorted(policies)),
    )
    return summary, findings


def _policy(recorded: Any, configured: Mapping[str, Mapping[str, Any]]) -> tuple[int, float]:
    """The strictest of the recorded policy and every configured key-holder policy."""
    if not isinstance(recorded, Mapping):
        raise ValueError("no policy recorded")
    candidates = [recorded, *configured.values()]
    k_min = max(int(c["k_min"]) for c in candidates if "k_min" in c)
    w_max = min(float(c["w_max"]) for c in candidates if "w_max" in c)
    return k_min, w_max


def _ckks(step: str, params: Any, where: str) -> list[Finding]:
    if not isinstance(params, Mapping):
        return [Finding("ckks.security", Status.WARN, step, "no CKKS parameters recorded", where)]
    n, bits = params.get("poly_modulus_degree"), params.get("coeff_mod_bit_sizes")
    bound = MAX_BITS_128.get(n) if isinstance(n, int) else None
    if bound is None or not isinstance(bits, list) or sum(bits) > bound:
        return [
            Finding(
                "ckks.security",
                Status.FAIL,
                step,
                f"CKKS N = {n} with {bits} bits is not within the 128-bit bound ({bound} bits)",
                where,
            )
        ]
    return []
