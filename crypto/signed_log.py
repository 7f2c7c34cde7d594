r"""The signed, hash-chained, append-only log: the key holder's decryption log and the client's ledger.

Format (version 1) — an auditor can check it offline with any JSON and Ed25519 library:

* UTF-8 text, one entry per line, each line ending in ``\n``; a line is the *canonical JSON* of one
  object: keys sorted, separators ``,`` and ``:`` without spaces, non-ASCII escaped, no NaN/Infinity
  (Python: ``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)``).
* Fields, all required and no others:
  ``seq`` (int, 0 for the first line, +1 per line), ``prev`` (hex SHA-256 of the previous line's bytes
  without its newline; 64 zeros for ``seq`` 0), ``author`` (identity of the signer, e.g. ``keyholder``),
  ``time`` (UTC, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``), ``kind`` (entry type, e.g. ``decryption``),
  ``payload`` (a JSON object whose schema depends on ``kind``), ``sig`` (base64 Ed25519 signature).
* ``sig`` signs ``b"secure-mor/signed-log/v1\n"`` followed by the canonical JSON of the entry
  without its ``sig`` field, under the author's pinned Ed25519 key.
* The hash of an entry, which the next entry's ``prev`` carries, is SHA-256 of its line's bytes.

Reading verifies every rule above and names the first bad entry: file, line number, rule broken.
Appending (``SignedLog.append``) first re-checks the chain when another writer touched the file, then
writes one full line with a single ``write`` on an ``O_APPEND`` descriptor under an exclusive
``flock``, and ``fsync``\s it; a log that does not verify is never appended to. When the write or the
``fsync`` fails (disk full, file-size limit, I/O error) the file is cut back to its previous length and
``LogWriteError`` names the file: a failed append leaves no partial line behind.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import errno
import fcntl
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from secure_mor.crypto.errors import LogIntegrityError, LogWriteError
from secure_mor.crypto.signing import LOG_ENTRY_DOMAIN, SigningKey, VerifyKey, canonical_json, sha256

GENESIS = "0" * 64
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
FIELDS = frozenset({"seq", "prev", "author", "time", "kind", "payload", "sig"})


@dataclass(frozen=True)
class LogEntry:
    """One verified entry of a signed log; ``line_hash`` is what the next entry's ``prev`` must be."""

    seq: int
    prev: str
    author: str
    time: str
    kind: str
    payload: Mapping[str, Any]
    sig: str

    def body(self) -> dict[str, Any]:
        """Return the fields the signature covers (everything but ``sig``)."""
        return {
            "seq": self.seq,
            "prev": self.prev,
            "author": self.author,
            "time": self.time,
            "kind": self.kind,
            "payload": dict(self.payload),
        }

    def line(self) -> bytes:
        """Encode the entry as its canonical line, without the newline."""
        return canonical_json({**self.body(), "sig": self.sig})

    @property
    def line_hash(self) -> str:
        """Hex SHA-256 of ``line()``."""
        return sha256(self.line()).hex()


def signed_bytes(body: Mapping[str, Any]) -> bytes:
    """Return the bytes an entry's signature covers."""
    return LOG_ENTRY_DOMAIN + canonical_json(body)


def read_log(path: Path, keys: Mapping[str, VerifyKey]) -> tuple[LogEntry, ...]:
    """Read and verify the whole log at ``path`` against the pinned ``keys`` (identity → key)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise LogIntegrityError(f"{path}: log file not found") from None
    return _verify(path, data, keys)


def _verify(path: Path, data: bytes, keys: Mapping[str, VerifyKey]) -> tuple[LogEntry, ...]:
    entries: list[LogEntry] = []
    prev = GENESIS
    lines = data.split(b"\n")
    if lines[-1]:
        raise LogIntegrityError(f"{path}:{len(lines)}: incomplete last line (no newline; a torn write?)")
    for number, raw in enumerate(lines[:-1], start=1):
        entry = _parse(path, number, raw, keys)
        where = f"{path}:{number}"
        if entry.seq != number - 1:
            raise LogIntegrityError(f"{where}: seq is {entry.seq}, expected {number - 1}")
        if entry.prev != prev:
            raise LogIntegrityError(
                f"{where}: prev is {entry.prev[:16]}…, expected {prev[:16]}… (the hash of line {number - 1});"
                " an earlier line was changed, removed or reordered"
            )
        entries.append(entry)
        prev = sha256(raw).hex()
    return tuple(entries)


def _parse(path: Path, number: int, raw: bytes, keys: Mapping[str, VerifyKey]) -> LogEntry:
    where = f"{path}:{number}"
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise LogIntegrityError(f"{where}: not valid JSON ({error})") from None
    if not isinstance(obj, dict) or set(obj) != FIELDS:
        found = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise LogIntegrityError(f"{where}: expected an object with fields {sorted(FIELDS)}, found {found}")
    if canonical_json(obj) != raw:
        raise LogIntegrityError(f"{where}: line is not in canonical JSON form (was it edited by hand?)")
    types = {"seq": int, "prev": str, "author": str, "time": str, "kind": str, "payload": dict, "sig": str}
    for name, kind in types.items():
        if not isinstance(obj[name], kind) or isinstance(obj[name], bool):
            raise LogIntegrityError(f"{where}: {name} must be {kind.__name__}, found {obj[name]!r}")
    try:
        dt.datetime.strptime(obj["time"], TIME_FORMAT)
    except ValueError:
        raise LogIntegrityError(f"{where}: time {obj['time']!r} is not UTC {TIME_FORMAT}") from None
    key = keys.get(obj["author"])
    if key is None:
        raise LogIntegrityError(f"{where}: author {obj['author']!r} has no pinned signing key")
    try:
        signature = base64.b64decode(obj["sig"], validate=True)
    except binascii.Error:
        raise LogIntegrityError(f"{where}: sig is not base64") from None
    body = {name: obj[name] for name in FIELDS - {"sig"}}
    if not key.verify(signature, signed_bytes(body)):
        raise LogIntegrityError(f"{where}: signature of {obj['author']!r} does not verify (entry altered?)")
    return LogEntry(
        seq=obj["seq"],
        prev=obj["prev"],
        author=obj["author"],
        time=obj["time"],
        kind=obj["kind"],
        payload=MappingProxyType(obj["payload"]),
        sig=obj["sig"],
    )


class SignedLog:
    """An append-only signed log at ``path``, written by ``signer`` and verified against ``keys``.

    Opening creates the file when it is missing and verifies it otherwise (``LogIntegrityError`` if
    the chain is broken: such a log is never appended to). ``entries`` holds what was verified.
    """

    def __init__(self, path: Path, signer: SigningKey, keys: Mapping[str, VerifyKey] | None = None) -> None:
        self.path = path
        self._signer = signer
        self._keys = dict(keys or {})
        self._keys.setdefault(signer.identity, signer.public)
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
        except OSError as error:
            raise LogWriteError(
                f"{path}: cannot open the log for appending: {error.strerror or error}", error.errno
            ) from None
        try:
            with self._locked():
                self._reload()
        except BaseException:
            os.close(self._fd)
            raise

    @property
    def entries(self) -> tuple[LogEntry, ...]:
        """Every entry verified so far, oldest first."""
        return self._entries

    def append(self, kind: str, payload: Mapping[str, Any]) -> LogEntry:
        """Sign and append one entry; return it once it is on disk (written in one call, fsynced)."""
        with self._locked():
            if os.fstat(self._fd).st_size != self._size:
                self._reload()  # another writer appended (or truncated): verify before extending
            seq = len(self._entries)
            prev = self._entries[-1].line_hash if self._entries else GENESIS
            now = dt.datetime.now(dt.UTC).strftime(TIME_FORMAT)
            content = json.loads(canonical_json(dict(payload)))  # a JSON copy: what readers will see
            body = {"seq": seq, "prev": prev, "author": self._signer.identity, "time": now}
            body |= {"kind": kind, "payload": content}
            sig = base64.b64encode(self._signer.sign(signed_bytes(body))).decode()
            entry = LogEntry(seq, prev, self._signer.identity, now, kind, MappingProxyType(content), sig)
            line = entry.line() + b"\n"
            self._write_line(line, seq)
            self._entries += (entry,)
            self._size += len(line)
            return entry

    def _write_line(self, line: bytes, seq: int) -> None:
        """Write ``line`` in one call and fsync it; on failure cut the file back to the last whole entry."""
        try:
            written = os.write(self._fd, line)
            if written != len(line):  # the disk or the file-size limit took only part of the line
                raise OSError(errno.ENOSPC, f"only {written} of {len(line)} bytes written (disk full?)")
            os.fsync(self._fd)
        except OSError as error:
            reason = error.strerror or str(error)
            try:
                os.ftruncate(self._fd, self._size)
                os.fsync(self._fd)
            except OSError as cut:
                raise LogWriteError(
                    f"{self.path}: cannot append entry seq {seq} ({reason}), and cutting back the partial "
                    f"line failed too ({cut.strerror}): the log may end in a torn line; restore it to "
                    f"{self._size} bytes",
                    error.errno,
                ) from None
            raise LogWriteError(
                f"{self.path}: cannot append entry seq {seq}: {reason}; the log is unchanged "
                "(free disk space or fix the file's permissions, then retry)",
                error.errno,
            ) from None

    def close(self) -> None:
        """Close the file descriptor."""
        os.close(self._fd)

    def _reload(self) -> None:
        os.lseek(self._fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(self._fd, 1 << 20):
            chunks.append(chunk)
        data = b"".join(chunks)
        self._entries = _verify(self.path, data, self._keys)
        self._size = len(data)

    def _locked(self) -> _FileLock:
        return _FileLock(self._lock, self._fd)


class _FileLock:
    """Hold the thread lock and an exclusive ``flock`` on the log's descriptor."""

    def __init__(self, lock: threading.Lock, fd: int) -> None:
        self._lock, self._fd = lock, fd

    def __enter__(self) -> None:
        self._lock.acquire()
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._lock.release()
