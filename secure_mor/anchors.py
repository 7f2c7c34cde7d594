r"""The server's anchors log: what the other parties told it, kept so an audit can check that logs are whole.

A hash chain proves that no entry inside a log was changed, removed or reordered, but not that the log
is whole: cut a log after any entry and what is left is a valid, shorter chain. An *anchor* pins one
party's log from outside, in a log another party keeps. The server keeps ``anchors.jsonl`` in its run
folder: a signed log in the one signed-log format (``secure_mor.crypto.signed_log``), written by the
identity ``server`` with its kit's Ed25519 key. Entry kinds and their payloads (schema 1):

``run_started``           ``run_id``, ``resumed``: each time ``server train`` starts on the run folder.
``client_joined``         ``client``, ``ledger_head``: each accepted ``Hello``; the head is the client's
                          signed announcement of its privacy ledger's last entry (``{"seq", "entry_hash",
                          "signature"}``, signature in base64) or ``null`` when it announced none.
``decryption_requested``  ``step_id``, ``contributors``: appended (and fsynced) *before* the server calls
                          ``DecryptAggregate``, so a decryption whose answer is lost is still on record.
``decryption_receipt``    ``step_id``, ``keyholder_seq``, ``keyholder_entry_hash``: what
                          ``DecryptAggregate`` answered — the seq and line hash of the key holder's
                          decryption-log entry that records the decryption.

``secure-mor audit`` (``secure_mor.audit.anchors``) checks, given the run and the other parties' logs,
that each receipt names an entry the key holder's log still holds (same seq, hash and step), that the
key holder's log holds no decryption of the run the server did not request, and that each announced
ledger head is still in the client's ledger at its seq.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from secure_mor.crypto.signing import SigningKey, VerifyKey, ledger_head_message
from secure_mor.protocol import scoring as sp

ANCHORS_FILE = "anchors.jsonl"
"""The anchors log's name in the server's run folder."""
SCHEMA = 1
ENTRY_HASH = re.compile(r"^[0-9a-f]{64}$")
MAX_SEQ = 2**63 - 1


def _field(payload: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    """``payload[name]`` if it has the type ``kind`` (never a bool for numbers); else ``ValueError``."""
    if name not in payload:
        raise ValueError(f"{name}: missing")
    value = payload[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ValueError(f"{name}: expected {getattr(kind, '__name__', kind)}, found {value!r}")
    return value


def _seq(payload: Mapping[str, Any], name: str) -> int:
    value: int = _field(payload, name, int)
    if not 0 <= value <= MAX_SEQ:
        raise ValueError(f"{name}: expected an integer in [0, 2^63), found {value}")
    return value


def _hash(payload: Mapping[str, Any], name: str) -> str:
    value: str = _field(payload, name, str)
    if not ENTRY_HASH.match(value):
        raise ValueError(f"{name}: expected 64 lowercase hex digits, found {value[:80]!r}")
    return value


@dataclass(frozen=True)
class LedgerHead:
    """A client's signed announcement of its privacy ledger's last entry: seq and line hash."""

    seq: int
    entry_hash: str
    signature: bytes

    @classmethod
    def sign(cls, signer: SigningKey, seq: int, entry_hash: str) -> LedgerHead:
        """Announce (``seq``, ``entry_hash``) as ``signer``'s identity."""
        return cls(seq, entry_hash, signer.sign(ledger_head_message(signer.identity, seq, entry_hash)))

    def verifies(self, key: VerifyKey) -> bool:
        """Whether the signature is ``key``'s over this head, announced by ``key.identity``."""
        return key.verify(self.signature, ledger_head_message(key.identity, self.seq, self.entry_hash))

    def to_proto(self) -> sp.LedgerHead:
        """The head as the ``Hello.ledger_head`` wire message."""
        return sp.LedgerHead(seq=self.seq, entry_hash=self.entry_hash, signature=self.signature)

    @classmethod
    def from_proto(cls, message: sp.LedgerHead) -> LedgerHead:
        """Decode ``Hello.ledger_head``; ``ValueError`` names the field that does not fit."""
        fields = {"seq": int(message.seq), "entry_hash": message.entry_hash}
        signature = bytes(message.signature)
        if len(signature) != 64:
            raise ValueError(f"signature: expected 64 bytes (Ed25519), found {len(signature)}")
        return cls(_seq(fields, "seq"), _hash(fields, "entry_hash"), signature)

    def to_json(self) -> dict[str, Any]:
        """The head as a JSON object (the signature in base64)."""
        return {
            "seq": self.seq,
            "entry_hash": self.entry_hash,
            "signature": base64.b64encode(self.signature).decode(),
        }

    @classmethod
    def from_json(cls, value: Any) -> LedgerHead:
        """Parse ``to_json``'s object; ``ValueError`` names the field that does not fit."""
        if not isinstance(value, Mapping):
            raise ValueError(f"ledger_head: expected an object or null, found {value!r}")
        try:
            signature = base64.b64decode(_field(value, "signature", str), validate=True)
        except binascii.Error:
            raise ValueError("ledger_head.signature: not base64") from None
        return cls(_seq(value, "seq"), _hash(value, "entry_hash"), signature)


@dataclass(frozen=True)
class RunStarted:
    """``server train`` started (or resumed) on the run folder under ``run_id``."""

    KIND: ClassVar[str] = "run_started"
    run_id: str
    resumed: bool

    def payload(self) -> dict[str, Any]:
        """The log payload (schema 1)."""
        return {"schema": SCHEMA, "run_id": self.run_id, "resumed": self.resumed}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> RunStarted:
        """Parse a payload; ``ValueError`` names the field that does not fit."""
        return cls(_field(payload, "run_id", str), _field(payload, "resumed", bool))


@dataclass(frozen=True)
class ClientJoined:
    """The server accepted ``client``'s Hello, which announced ``head`` (``None``: no announcement)."""

    KIND: ClassVar[str] = "client_joined"
    client: str
    head: LedgerHead | None

    def payload(self) -> dict[str, Any]:
        """The log payload (schema 1)."""
        head = None if self.head is None else self.head.to_json()
        return {"schema": SCHEMA, "client": self.client, "ledger_head": head}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> ClientJoined:
        """Parse a payload; ``ValueError`` names the field that does not fit."""
        if "ledger_head" not in payload:
            raise ValueError("ledger_head: missing")
        raw = payload["ledger_head"]
        return cls(_field(payload, "client", str), None if raw is None else LedgerHead.from_json(raw))


@dataclass(frozen=True)
class DecryptionRequested:
    """The server is about to ask the key holder to decrypt ``step_id``'s fusion of ``contributors``."""

    KIND: ClassVar[str] = "decryption_requested"
    step_id: str
    contributors: tuple[str, ...]

    def payload(self) -> dict[str, Any]:
        """The log payload (schema 1)."""
        return {"schema": SCHEMA, "step_id": self.step_id, "contributors": list(self.contributors)}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> DecryptionRequested:
        """Parse a payload; ``ValueError`` names the field that does not fit."""
        contributors = _field(payload, "contributors", list)
        if not all(isinstance(c, str) for c in contributors):
            raise ValueError(f"contributors: expected a list of identities, found {contributors!r}")
        return cls(_field(payload, "step_id", str), tuple(contributors))


@dataclass(frozen=True)
class DecryptionReceipt:
    """The key holder's answer for ``step_id``: the seq and line hash of its decryption-log entry."""

    KIND: ClassVar[str] = "decryption_receipt"
    step_id: str
    keyholder_seq: int
    keyholder_entry_hash: str

    def payload(self) -> dict[str, Any]:
        """The log payload (schema 1)."""
        return {
            "schema": SCHEMA,
            "step_id": self.step_id,
            "keyholder_seq": self.keyholder_seq,
            "keyholder_entry_hash": self.keyholder_entry_hash,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> DecryptionReceipt:
        """Parse a payload; ``ValueError`` names the field that does not fit."""
        return cls(
            _field(payload, "step_id", str),
            _seq(payload, "keyholder_seq"),
            _hash(payload, "keyholder_entry_hash"),
        )


Anchor = RunStarted | ClientJoined | DecryptionRequested | DecryptionReceipt
KINDS: dict[str, type[Anchor]] = {
    kind.KIND: kind for kind in (RunStarted, ClientJoined, DecryptionRequested, DecryptionReceipt)
}


def parse_anchor(kind: str, payload: Mapping[str, Any]) -> Anchor:
    """The anchor an entry of ``kind`` records; ``ValueError`` for an unknown kind or a malformed payload."""
    if kind not in KINDS:
        raise ValueError(f"unknown anchor kind {kind!r} (expected one of {sorted(KINDS)})")
    if payload.get("schema") != SCHEMA:
        raise ValueError(f"schema: expected {SCHEMA}, found {payload.get('schema')!r}")
    return KINDS[kind].from_payload(payload)


def run_of(step_id: str) -> str:
    """The run id of a step id ``<run_id>/<n>`` (the whole id when it has no ``/``)."""
    return step_id.rsplit("/", 1)[0]


__all__ = [
    "ANCHORS_FILE",
    "KINDS",
    "Anchor",
    "ClientJoined",
    "DecryptionReceipt",
    "DecryptionRequested",
    "LedgerHead",
    "RunStarted",
    "parse_anchor",
    "run_of",
]
