"""The signed hash-chained log: round trip, every kind of tampering named precisely, safe appends."""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secure_mor.crypto.errors import LogIntegrityError
from secure_mor.crypto.signed_log import GENESIS, SignedLog, read_log, signed_bytes
from secure_mor.crypto.signing import SigningKey, canonical_json, sha256

KEY = SigningKey.generate("keyholder")
KEYS = {"keyholder": KEY.public}


def write_log(path: Path, n: int = 4) -> list[bytes]:
    log = SignedLog(path, KEY)
    for i in range(n):
        log.append("decryption", {"step_id": f"s{i}", "count": i, "weights": [0.5, 0.25]})
    log.close()
    return path.read_bytes().splitlines(keepends=True)


def test_entries_round_trip_and_chain(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    write_log(path)
    entries = read_log(path, KEYS)
    assert [e.seq for e in entries] == [0, 1, 2, 3]
    assert entries[0].prev == GENESIS
    lines = path.read_bytes().splitlines()
    assert all(entries[i + 1].prev == sha256(lines[i]).hex() for i in range(3))
    assert entries[2].payload == {"step_id": "s2", "count": 2, "weights": [0.5, 0.25]}
    assert all(line == canonical_json(json.loads(line)) for line in lines)


def test_reopening_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    write_log(path, 2)
    log = SignedLog(path, KEY)
    assert log.append("decryption", {"step_id": "s9"}).seq == 2
    log.close()
    assert len(read_log(path, KEYS)) == 3


def tampered(tmp_path: Path, edit: str) -> Path:
    path = tmp_path / "log.jsonl"
    lines = write_log(path)
    if edit == "payload":
        lines[2] = lines[2].replace(b'"count":2', b'"count":7')
    elif edit == "delete":
        del lines[1]
    elif edit == "swap":
        lines[1], lines[2] = lines[2], lines[1]
    elif edit == "torn":
        lines[3] = lines[3][:40]
    elif edit == "spaces":
        lines[2] = json.dumps(json.loads(lines[2])).encode() + b"\n"
    path.write_bytes(b"".join(lines))
    return path


@pytest.mark.parametrize(
    ("edit", "where", "what"),
    [
        ("payload", ":3:", "signature of 'keyholder' does not verify"),
        ("delete", ":2:", "seq is 2, expected 1"),
        ("swap", ":2:", "seq is 2, expected 1"),
        ("torn", ":4:", "incomplete last line"),
        ("spaces", ":3:", "canonical"),
    ],
)
def test_the_first_bad_entry_is_reported_precisely(tmp_path: Path, edit: str, where: str, what: str) -> None:
    path = tampered(tmp_path, edit)
    with pytest.raises(LogIntegrityError, match=what) as info:
        read_log(path, KEYS)
    assert f"{path}{where}" in str(info.value)


def test_a_re_signed_edit_still_breaks_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    lines = write_log(path)
    entry = json.loads(lines[1])
    entry["payload"]["count"] = 99
    body = {k: v for k, v in entry.items() if k != "sig"}
    entry["sig"] = base64.b64encode(KEY.sign(signed_bytes(body))).decode()  # the author's key, e.g. stolen
    lines[1] = canonical_json(entry) + b"\n"
    path.write_bytes(b"".join(lines))
    with pytest.raises(LogIntegrityError, match=r":3: prev is .* hash of line 2"):
        read_log(path, KEYS)


def test_an_unknown_author_or_wrong_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    write_log(path, 1)
    with pytest.raises(LogIntegrityError, match="no pinned signing key"):
        read_log(path, {})
    with pytest.raises(LogIntegrityError, match="does not verify"):
        read_log(path, {"keyholder": SigningKey.generate("keyholder").public})


def test_a_broken_log_is_never_appended_to(tmp_path: Path) -> None:
    path = tampered(tmp_path, "payload")
    before = path.read_bytes()
    with pytest.raises(LogIntegrityError, match=":3:"):
        SignedLog(path, KEY)
    assert path.read_bytes() == before


def test_an_append_after_another_writer_tampered_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    log = SignedLog(path, KEY)
    log.append("decryption", {"step_id": "a"})
    with path.open("ab") as file:
        file.write(b'{"forged": true}\n')
    with pytest.raises(LogIntegrityError, match=":2:"):
        log.append("decryption", {"step_id": "b"})
    log.close()


def test_concurrent_writers_keep_one_valid_chain(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    writers = [SignedLog(path, KEY) for _ in range(2)]

    def work(log: SignedLog, tag: str) -> None:
        for i in range(15):
            log.append("event", {"tag": tag, "i": i})

    threads = [threading.Thread(target=work, args=(log, str(n))) for n, log in enumerate(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for log in writers:
        log.close()
    assert [e.seq for e in read_log(path, KEYS)] == list(range(30))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(0, 10_000), flip=st.integers(1, 255))
def test_any_single_byte_change_is_detected(tmp_path: Path, position: int, flip: int) -> None:
    path = tmp_path / "fuzz.jsonl"
    if not path.exists():
        write_log(path, 3)
    data = bytearray(path.read_bytes())
    original = bytes(data)
    data[position % len(data)] ^= flip
    path.write_bytes(bytes(data))
    try:
        with pytest.raises(LogIntegrityError):
            read_log(path, KEYS)
    finally:
        path.write_bytes(original)
