"""Completeness across parties: a server run's anchors against the key holder's log and the clients' ledgers.

A verified hash chain can still be a cut-back one. The server's anchors log (``secure_mor.anchors``)
records what the other parties told it — the key holder's receipt (seq, line hash) for each decryption,
each client's signed announcement of its ledger's head — and here each is checked against the other
party's own log:

* ``anchors.receipt``: each receipt names an entry that the key holder's decryption log still holds, with
  the same seq, line hash and step id; otherwise that log was cut back or rewritten from that entry on.
* ``anchors.requested``: each decryption of an anchored run (step id ``<run_id>/<n>``) in the key holder's
  log was requested by the server. One never requested fails (the server's record of it was withheld,
  or the key holder decrypted for someone else); one requested without a receipt is a warning (its
  answer was lost: the server or the key holder stopped mid-call).
* ``anchors.signature`` and ``anchors.ledger_head``: each announced head carries the client's own
  signature and is in the client's ledger at that seq with that hash; a ledger ending earlier was cut
  back, one with another entry there was rewritten.
* ``anchors.missing`` (a warning): what could not be checked — decryptions of runs that no anchors log
  among the inputs covers, a run folder from before anchors, a ledger whose head no run recorded, a
  client that joined without announcing one.

Anchors show that two parties' records agree; two parties that collude can still agree on a shorter
history (SECURITY.md).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from secure_mor.anchors import (
    ClientJoined,
    DecryptionReceipt,
    DecryptionRequested,
    LedgerHead,
    RunStarted,
    parse_anchor,
    run_of,
)
from secure_mor.audit.findings import Finding, Status
from secure_mor.crypto.signed_log import LogEntry
from secure_mor.crypto.signing import VerifyKey

DECRYPTION = "decryption"
SERVER = "server"
T = TypeVar("T")
Log = tuple[str, Sequence[LogEntry]]
"""A verified log: its path and its entries."""


@dataclass(frozen=True)
class Anchored(Generic[T]):
    """One anchor as the server recorded it: the anchor, where (``file:line``) and when (UTC)."""

    anchor: T
    where: str
    time: str


@dataclass(frozen=True)
class AnchorRecords:
    """Everything the verified anchors logs among the inputs recorded."""

    files: tuple[str, ...]
    runs: Mapping[str, tuple[str, ...]]
    """Run id → the anchors files that recorded it."""
    joins: tuple[Anchored[ClientJoined], ...]
    requests: Mapping[str, Anchored[DecryptionRequested]]
    """Step id → its request."""
    receipts: tuple[Anchored[DecryptionReceipt], ...]


def collect(logs: Sequence[Log]) -> tuple[AnchorRecords, list[Finding]]:
    """Parse the anchors logs' entries; a malformed entry is a failing ``anchors.entry`` finding."""
    findings: list[Finding] = []
    runs: dict[str, set[str]] = defaultdict(set)
    joins: list[Anchored[ClientJoined]] = []
    requests: dict[str, Anchored[DecryptionRequested]] = {}
    receipts: list[Anchored[DecryptionReceipt]] = []
    for path, entries in logs:
        for entry in entries:
            where = f"{path}:{entry.seq + 1}"
            try:
                anchor = parse_anchor(entry.kind, entry.payload)
            except ValueError as error:
                message = f"malformed {entry.kind!r} entry: {error}"
                findings.append(Finding("anchors.entry", Status.FAIL, SERVER, message, where))
                continue
            if isinstance(anchor, RunStarted):
                runs[anchor.run_id].add(path)
            elif isinstance(anchor, ClientJoined):
                joins.append(Anchored(anchor, where, entry.time))
            elif isinstance(anchor, DecryptionRequested):
                runs[run_of(anchor.step_id)].add(path)
                requests.setdefault(anchor.step_id, Anchored(anchor, where, entry.time))
            else:
                runs[run_of(anchor.step_id)].add(path)
                receipts.append(Anchored(anchor, where, entry.time))
    records = AnchorRecords(
        files=tuple(path for path, _ in logs),
        runs={run: tuple(sorted(files)) for run, files in runs.items()},
        joins=tuple(joins),
        requests=requests,
        receipts=tuple(receipts),
    )
    return records, findings


def _short(digest: str) -> str:
    return f"{digest[:16]}…"


def decryption_completeness(
    records: AnchorRecords, logs: Sequence[Log], keyholder_kit: Path | None, unverified: bool = False
) -> list[Finding]:
    """Receipts against the key holder's decryption logs, and those logs' decryptions against requests.

    ``keyholder_kit``: the key holder's kit folder when it is among the inputs; with it and no decryption
    log, the log counts as empty (deleted or emptied) rather than as not given. ``unverified``: a
    decryption log among the inputs failed verification (already a failure), so receipts are not
    checked against the others.
    """
    findings = [] if unverified else _receipts(records, logs, keyholder_kit)
    receipted = {r.anchor.step_id for r in records.receipts}
    unknown: dict[str, set[str]] = defaultdict(set)  # log → run ids without anchors
    flagged: set[str] = set()  # runs with a decryption that was not requested or has no receipt
    for path, entries in logs:
        per_run: dict[str, int] = defaultdict(int)
        for entry in entries:
            step = entry.payload.get("step_id")
            if entry.kind != DECRYPTION or not isinstance(step, str):
                continue  # malformed entries are the decryption checks' to report
            run = run_of(step)
            if run not in records.runs:
                unknown[path].add(run)
                continue
            per_run[run] += 1
            where = f"{path}:{entry.seq + 1}"
            if step in receipted:
                continue
            request = records.requests.get(step)
            files = ", ".join(records.runs[run])
            flagged.add(run)
            if request is None:
                message = (
                    f"step {step} was decrypted (key holder entry seq {entry.seq}) but the server's anchors "
                    f"of run {run!r} ({files}) never requested it: the server's record of it is missing"
                )
                findings.append(Finding("anchors.requested", Status.FAIL, step, message, where))
            else:
                message = (
                    f"step {step} was decrypted at the server's request ({request.where}) but the server "
                    "recorded no receipt: the answer was lost (the server or the key holder stopped mid-call)"
                )
                findings.append(Finding("anchors.requested", Status.WARN, step, message, where))
        for run, count in sorted(per_run.items()):
            if run not in flagged:
                message = f"all {count} decryption(s) of run {run!r} were requested by the server"
                findings.append(Finding("anchors.requested", Status.PASS, run, message, path))
    for path, runs in unknown.items():
        names = ", ".join(repr(r) for r in sorted(runs)[:8]) + (" …" if len(runs) > 8 else "")
        message = (
            f"decryptions of run(s) {names} have no server anchors log among the inputs: completeness could "
            "not be checked (pass the server's run folder; runs made before anchors have none)"
        )
        findings.append(Finding("anchors.missing", Status.WARN, "key holder", message, path))
    return findings


def _receipts(records: AnchorRecords, logs: Sequence[Log], keyholder_kit: Path | None) -> list[Finding]:
    if not records.receipts:
        return []
    if not logs and keyholder_kit is None:
        message = (
            f"completeness could not be checked: no key holder decryption log among the inputs for the "
            f"{len(records.receipts)} receipt(s) in {', '.join(records.files)} (pass the key holder's kit)"
        )
        return [Finding("anchors.missing", Status.WARN, SERVER, message)]
    findings = []
    for anchored in records.receipts:
        receipt = anchored.anchor
        seq = receipt.keyholder_seq
        if any(
            seq < len(entries)
            and entries[seq].line_hash == receipt.keyholder_entry_hash
            and entries[seq].payload.get("step_id") == receipt.step_id
            for _, entries in logs
        ):
            continue
        message = (
            f"step {receipt.step_id} was decrypted for the server (its receipt at {anchored.where}: key "
            f"holder entry seq {seq}, hash {_short(receipt.keyholder_entry_hash)}), but "
            + _why_missing(seq, logs, keyholder_kit)
        )
        findings.append(Finding("anchors.receipt", Status.FAIL, receipt.step_id, message, anchored.where))
    if not findings:
        where = ", ".join(path for path, _ in logs)
        message = f"all {len(records.receipts)} receipt(s) name their entries in the key holder's log"
        findings.append(Finding("anchors.receipt", Status.PASS, SERVER, message, where))
    return findings


def _why_missing(seq: int, logs: Sequence[Log], keyholder_kit: Path | None) -> str:
    if not logs:
        return (
            f"the key holder's kit {keyholder_kit} holds no decryption log with entries (deleted or emptied)"
        )
    if len(logs) > 1:
        return f"none of {', '.join(path for path, _ in logs)} holds that entry"
    path, entries = logs[0]
    if seq >= len(entries):
        return f"{path} ends at seq {len(entries) - 1}: the key holder's log was cut back"
    other = entries[seq]
    return (
        f"entry seq {seq} of {path} is another (step {other.payload.get('step_id')!r}, hash "
        f"{_short(other.line_hash)}): the key holder's log was rewritten from there"
    )


def ledger_completeness(
    records: AnchorRecords,
    ledgers: Mapping[str, Log],
    kits: Mapping[str, Path],
    keys: Mapping[str, VerifyKey],
    unverified: frozenset[str] = frozenset(),
) -> tuple[dict[str, int], list[Finding]]:
    """Each announced ledger head against the client's ledger; return identity → last announced seq.

    ``ledgers``: identity → its verified ledger; ``kits``: identity → kit folder among the inputs (a
    client whose kit is given but holds no ledger has an empty one); ``unverified``: identities whose
    ledger failed verification (already a failing finding; not checked again here).
    """
    findings: list[Finding] = []
    heads: dict[str, list[Anchored[LedgerHead]]] = defaultdict(list)
    silent: set[str] = set()
    for join in records.joins:
        if join.anchor.head is None:
            silent.add(join.anchor.client)
        else:
            heads[join.anchor.client].append(Anchored(join.anchor.head, join.where, join.time))
    announced: dict[str, int] = {}
    for identity, announcements in sorted(heads.items()):
        if identity in unverified:
            continue
        problems = [f for a in _distinct(announcements) if (f := _head(identity, a, ledgers, kits, keys))]
        findings += problems
        if not problems:
            last = max(announcements, key=lambda a: (a.time, a.anchor.seq))
            announced[identity] = last.anchor.seq
            message = (
                f"its ledger holds every announced head ({len(announcements)} announcement(s)); the last: "
                f"seq {last.anchor.seq}, hash {_short(last.anchor.entry_hash)}"
            )
            findings.append(Finding("anchors.ledger_head", Status.PASS, identity, message, last.where))
    for identity in sorted(silent - heads.keys()):
        message = (
            "joined without announcing its ledger head (an older client): completeness could not be checked"
        )
        findings.append(Finding("anchors.missing", Status.WARN, identity, message))
    for identity in sorted(ledgers.keys() - heads.keys() - silent):
        message = "no server run among the inputs recorded its ledger head: completeness could not be checked"
        findings.append(Finding("anchors.missing", Status.WARN, identity, message, ledgers[identity][0]))
    return announced, findings


def _distinct(announcements: Sequence[Anchored[LedgerHead]]) -> list[Anchored[LedgerHead]]:
    """The first announcement of each distinct head (a client announces the same head at every join)."""
    seen: dict[LedgerHead, Anchored[LedgerHead]] = {}
    for announcement in announcements:
        seen.setdefault(announcement.anchor, announcement)
    return list(seen.values())


def _head(
    identity: str,
    announced: Anchored[LedgerHead],
    ledgers: Mapping[str, Log],
    kits: Mapping[str, Path],
    keys: Mapping[str, VerifyKey],
) -> Finding | None:
    """A failing finding when ``announced`` is not ``identity``'s signed head in its ledger, else None."""
    head, where = announced.anchor, announced.where
    key = keys.get(identity)
    if key is None or not head.verifies(key):
        message = (
            f"the head announced at {where} (seq {head.seq}) does not carry {identity!r}'s signature: "
            "the server's record of the announcement is not the client's"
        )
        return Finding("anchors.signature", Status.FAIL, identity, message, where)
    said = f"{identity} announced its ledger head seq {head.seq} (hash {_short(head.entry_hash)}) at {where}"
    if identity not in ledgers:
        if identity not in kits:
            message = f"{said}; its ledger is not among the inputs: completeness could not be checked"
            return Finding("anchors.missing", Status.WARN, identity, message, where)
        message = f"{said}, but its kit {kits[identity]} holds no ledger with entries: deleted or emptied"
        return Finding("anchors.ledger_head", Status.FAIL, identity, message, where)
    path, entries = ledgers[identity]
    if head.seq >= len(entries):
        message = f"{said}, but {path} ends at seq {len(entries) - 1}: the ledger was cut back"
        return Finding("anchors.ledger_head", Status.FAIL, identity, message, where)
    if entries[head.seq].line_hash != head.entry_hash:
        found = _short(entries[head.seq].line_hash)
        message = f"{said}, but entry seq {head.seq} of {path} has hash {found}: the ledger was rewritten"
        return Finding("anchors.ledger_head", Status.FAIL, identity, message, where)
    return None


def runs_without_anchors(folders: Sequence[Path]) -> list[Finding]:
    """A warning per server run folder without an anchors log (written before anchors existed)."""
    return [
        Finding(
            "anchors.missing",
            Status.WARN,
            str(folder),
            "a server run folder without anchors.jsonl (made before anchors existed?): completeness could "
            "not be checked — whether the key holder's log and the clients' ledgers are whole",
            str(folder),
        )
        for folder in folders
    ]
