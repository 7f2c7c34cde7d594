"""Hostile input to every gRPC method, over real mTLS on loopback, from correctly authenticated peers.

The methods are those of the two ``.proto`` services: ``KeyHolder.GetPublicContext``,
``KeyHolder.DecryptAggregate`` and ``Federation.Connect`` (``test_every_service_method_is_covered``
fails when a method is added without a test here). Each property sends malformed, truncated, oversized
or out-of-range messages — also raw bytes that are no protobuf at all, through a generic
``channel.unary_unary``/``stream_stream`` with no serializer — and checks:

* a precise status and message each time (the expected one is computed independently: the local
  protobuf parser and the pure policy function for the key holder, the Hello rules for the federation);
* no crash and no hang: every call has a deadline, and a valid request is answered afterwards;
* no state change: the decryption log and the set of decrypted step ids are unchanged, a step id that
  was refused stays usable, the federation roster is unchanged;
* every key holder refusal is written to its service log.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from secure_mor import protocol as pb
from secure_mor.crypto.ckks import PublicContext
from secure_mor.crypto.errors import PolicyRefusal
from secure_mor.crypto.keyholder import RunningKeyholder, start_keyholder
from secure_mor.crypto.kit import load_trust
from secure_mor.crypto.policy import check_request
from secure_mor.crypto.provision import Federation, create_federation
from secure_mor.crypto.signing import ledger_head_message
from secure_mor.crypto.transport import secure_channel
from secure_mor.protocol import federation_pb2, scoring_pb2
from secure_mor.protocol import scoring as sp
from secure_mor.protocol.parsing import MAX_DETAILS, bounded
from secure_mor.server.federation import FederationService, RunningFederation, serve_federation

from .crypto.conftest import (
    CLIENTS,
    client_key,
    fetch_public,
    keyholder_config,
    kit_tls,
    make_request,
    uniform,
)

KEYHOLDER = "/secure_mor.v1.KeyHolder/"
CONNECT = "/secure_mor.v1.Federation/Connect"
KH_CAP = 2 * 1024 * 1024  # keyholder_config's max_message_bytes
FED_CAP = 1024 * 1024
CALL_TIMEOUT = 20.0
FUZZ = settings(max_examples=50, deadline=None)
RNG = np.random.default_rng(11)

pytestmark = pytest.mark.timeout(120)


# --- a federation with a running key holder and Federation endpoint, shared by the module --------------


@dataclasses.dataclass
class Deployment:
    federation: Federation
    keyholder: RunningKeyholder
    endpoint: RunningFederation
    public: PublicContext
    channels: dict[str, grpc.Channel]

    def channel(self, party: str, service: str = "keyholder") -> grpc.Channel:
        """One mTLS channel per (party, service), with an 8 MiB send cap (above both services' caps)."""
        key = f"{party}->{service}"
        if key not in self.channels:
            port = self.keyholder.port if service == "keyholder" else self.endpoint.port
            tls = kit_tls(self.federation.root, party)
            self.channels[key] = secure_channel(f"127.0.0.1:{port}", tls, 8 << 20)
        return self.channels[key]

    def raw_unary(self, method: str, party: str = "server") -> grpc.UnaryUnaryMultiCallable[Any, Any]:
        return self.channel(party).unary_unary(KEYHOLDER + method)  # bytes in, bytes out

    def raw_connect(self, party: str = "clients/alice") -> grpc.StreamStreamMultiCallable[Any, Any]:
        return self.channel(party, "federation").stream_stream(CONNECT)

    def keyholder_state(self) -> tuple[bytes, frozenset[str]]:
        storage = self.keyholder.service.config.storage
        return storage.decryption_log.read_bytes(), frozenset(self.keyholder.service._decrypted)

    def refusals_logged(self) -> int:
        text = self.keyholder.service.config.storage.service_log.read_text()
        return text.count(" refused ")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("hostile")
    federation = create_federation(root / "fed", CLIENTS)
    keyholder = start_keyholder(keyholder_config(federation, root / "keyholder"))
    public = fetch_public(federation, keyholder.port)
    service = FederationService(
        run_id="hostile",
        allowed=[f"client:{n}" for n in CLIENTS],
        public=public,
        pinned=load_trust(federation.root / "server" / "trust.toml"),
        heartbeat_seconds=1.0,
    )
    endpoint = serve_federation(
        service,
        listen="127.0.0.1:0",
        tls=kit_tls(federation.root, "server"),
        max_message_bytes=FED_CAP,
        max_clients=8,
    )
    deployed = Deployment(federation, keyholder, endpoint, public, {})
    try:
        yield deployed
    finally:
        for channel in deployed.channels.values():
            channel.close()
        endpoint.stop(None)
        keyholder.stop(None)


def status(call: Callable[[], object]) -> tuple[grpc.StatusCode, str, object]:
    """Run ``call``; return (status code, details, result) — the result only when it succeeded."""
    try:
        result = call()
    except grpc.RpcError as error:
        return error.code(), error.details() or "", None
    return grpc.StatusCode.OK, "", result


def assert_keyholder_still_answers(deployment: Deployment) -> None:
    reply = pb.keyholder_stub(deployment.channel("server")).GetPublicContext(
        pb.GetPublicContextRequest(), timeout=CALL_TIMEOUT
    )
    assert reply.fingerprint == deployment.public.fingerprint


# --- coverage: every method of every service has hostile-input tests here ---------------------------


COVERED = {
    "secure_mor.v1.KeyHolder": {"GetPublicContext", "DecryptAggregate"},
    "secure_mor.v1.Federation": {"Connect"},
}


def test_every_service_method_is_covered() -> None:
    declared = {
        service.full_name: set(service.methods_by_name)
        for module in (federation_pb2, scoring_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
    }
    assert declared == COVERED


# --- KeyHolder.GetPublicContext ----------------------------------------------------------------------


@FUZZ
@given(data=st.binary(max_size=300))
@example(data=b"\x0a")  # a length-delimited field with no length: truncated
@example(data=b"\x0a\x05ab")  # a field shorter than its declared length
@example(data=b"\x0f")  # wire type 7 does not exist
@example(data=b"\x08" + b"\xff" * 11)  # a varint longer than 10 bytes
@example(data=b"\x0a\x02ab")  # an unknown but well-formed field: ignored, as protobuf must
def test_get_public_context_answers_any_bytes_with_the_context_or_invalid_argument(
    deployment: Deployment, data: bytes
) -> None:
    before, refusals = deployment.keyholder_state(), deployment.refusals_logged()
    code, details, reply = status(
        lambda: deployment.raw_unary("GetPublicContext")(data, timeout=CALL_TIMEOUT)
    )
    try:
        pb.GetPublicContextRequest.FromString(data)
    except Exception:
        assert code == grpc.StatusCode.INVALID_ARGUMENT, details
        assert details.startswith(
            "malformed: the request is not a valid secure_mor.v1.GetPublicContextRequest protobuf"
        )
        assert deployment.refusals_logged() == refusals + 1
    else:
        assert code == grpc.StatusCode.OK, details
        assert isinstance(reply, bytes)
        assert pb.PublicContext.FromString(reply).fingerprint == deployment.public.fingerprint
    assert deployment.keyholder_state() == before


# --- KeyHolder.DecryptAggregate ------------------------------------------------------------------------


def expected_refusal(deployment: Deployment, request: pb.DecryptAggregateRequest) -> PolicyRefusal:
    """What the key holder must answer, from the pure policy function (or a malformed ciphertext)."""
    service = deployment.keyholder.service
    try:
        approved = check_request(
            request,
            policy=service.config.policy,
            fingerprint=deployment.public.fingerprint,
            slots=service._secret.params.slots,
            pinned=service._pinned,
            decrypted=service._decrypted,
        )
    except PolicyRefusal as refusal:
        return refusal
    raise AssertionError(f"a hostile request passed the policy: {approved.step_id!r}")


def send_decrypt(deployment: Deployment, data: bytes) -> tuple[grpc.StatusCode, str]:
    code, details, _ = status(lambda: deployment.raw_unary("DecryptAggregate")(data, timeout=CALL_TIMEOUT))
    return code, details


def assert_precise(code: grpc.StatusCode, details: str, refusal: PolicyRefusal) -> None:
    assert (code.name, details) == (refusal.code, bounded(str(refusal)))
    assert len(details) <= MAX_DETAILS


@FUZZ
@given(data=st.binary(max_size=400))
@example(data=b"\x12\xff\xff\xff\xff\x0f")  # aggregate declared 4 GiB long
@example(data=b"\x0a\x02\xc3\x28")  # step_id that is not UTF-8
@example(data=b"\x28" + b"\xff" * 9 + b"\x01")  # count = 2^64 - 1
def test_decrypt_aggregate_refuses_raw_bytes_precisely_and_changes_nothing(
    deployment: Deployment, data: bytes
) -> None:
    before, refusals = deployment.keyholder_state(), deployment.refusals_logged()
    code, details = send_decrypt(deployment, data)
    try:
        request = pb.DecryptAggregateRequest.FromString(data)
    except Exception:
        assert code == grpc.StatusCode.INVALID_ARGUMENT, details
        assert details.startswith(
            "malformed: the request is not a valid secure_mor.v1.DecryptAggregateRequest protobuf"
        )
    else:
        assert_precise(code, details, expected_refusal(deployment, request))
    assert deployment.keyholder_state() == before
    assert deployment.refusals_logged() == refusals + 1


huge_text = st.builds(lambda piece, n: piece * n, st.text(min_size=1, max_size=8), st.integers(3000, 30000))
long_text = st.text(min_size=1, max_size=40) | huge_text
requests = st.builds(
    pb.DecryptAggregateRequest,
    step_id=st.text(max_size=300) | st.sampled_from(["s", "step-1", "a" * 128, "a" * 129]),
    aggregate=st.builds(
        pb.EncryptedVector,
        context_fingerprint=st.binary(max_size=40),
        length=st.integers(0, 2**64 - 1),
        chunks=st.lists(st.binary(max_size=200), max_size=4),
    ),
    contributors=st.lists(
        st.builds(
            pb.Contribution,
            identity=st.sampled_from([f"client:{n}" for n in CLIENTS] + ["server", ""]) | long_text,
            ciphertext_digest=st.binary(max_size=40),
            signature=st.binary(max_size=80),
        ),
        max_size=6,
    ),
    weights=st.builds(
        pb.WeightSummary,
        max_weight=st.floats(allow_nan=True, allow_infinity=True),
        min_row_sum=st.floats(allow_nan=True, allow_infinity=True),
        max_row_sum=st.floats(allow_nan=True, allow_infinity=True),
    ),
    count=st.integers(0, 2**64 - 1),
)


@FUZZ
@given(request=requests)
@example(
    request=pb.DecryptAggregateRequest(
        step_id="dup",
        aggregate=pb.EncryptedVector(context_fingerprint=b"f" * 32, length=1, chunks=[b"x"]),
        contributors=[pb.Contribution(identity="y" * 200_000)] * 2,
        weights=pb.WeightSummary(),
        count=1,
    )
)  # a 200 kB identity, repeated: it used to be echoed whole and overflow gRPC's metadata limit
def test_decrypt_aggregate_refuses_out_of_range_requests_precisely(
    deployment: Deployment, request: pb.DecryptAggregateRequest
) -> None:
    if request.HasField("aggregate") and len(request.aggregate.context_fingerprint) == 32:
        request.aggregate.context_fingerprint = deployment.public.fingerprint  # reach the later rules
    before, refusals = deployment.keyholder_state(), deployment.refusals_logged()
    data = request.SerializeToString()
    code, details = send_decrypt(deployment, data)
    assert_precise(code, details, expected_refusal(deployment, request))
    assert deployment.keyholder_state() == before
    assert deployment.refusals_logged() == refusals + 1


MUTATIONS = (
    "truncate-chunk",
    "random-chunk",
    "empty-chunk",
    "extra-chunk",
    "no-chunk",
    "count+1",
    "length+1",
    "truncate-message",
    "other-step",
    "flip-signature",
    "swap-digest",
    "drop-contributor",
    "duplicate-contributor",
    "nan-weight",
    "heavy-weight",
    "row-sum",
    "other-fingerprint",
)
EXPECTED = {
    "truncate-chunk": ("INVALID_ARGUMENT", "malformed: malformed ciphertext chunk"),
    "random-chunk": ("INVALID_ARGUMENT", "malformed: "),  # does not parse, or parses to the wrong length
    "empty-chunk": ("INVALID_ARGUMENT", "malformed: decrypted 0 values, the vector declares 6"),
    "extra-chunk": ("INVALID_ARGUMENT", "malformed: count 6 must be ≥ 1"),
    "no-chunk": ("INVALID_ARGUMENT", "malformed: count 6 must be ≥ 1"),
    "count+1": ("INVALID_ARGUMENT", "malformed: count 7 must be ≥ 1 and equal aggregate.length (6)"),
    "length+1": ("INVALID_ARGUMENT", "malformed: count 6 must be ≥ 1 and equal aggregate.length (7)"),
    "truncate-message": ("INVALID_ARGUMENT", "malformed: "),
    "other-step": ("PERMISSION_DENIED", "signature: contributor 'client:alice': no valid signature"),
    "flip-signature": ("PERMISSION_DENIED", "signature: contributor "),
    "swap-digest": ("PERMISSION_DENIED", "signature: contributor "),
    "drop-contributor": ("FAILED_PRECONDITION", "k_min: 1 contributor(s)"),
    "duplicate-contributor": ("INVALID_ARGUMENT", "malformed: contributors must be distinct"),
    "nan-weight": ("FAILED_PRECONDITION", "weights: max_weight must be in (0, 1], found nan"),
    "heavy-weight": ("FAILED_PRECONDITION", "w_max: a router weight of 0.9 exceeds w_max = 0.75"),
    "row-sum": ("FAILED_PRECONDITION", "weights: router rows must sum to 1"),
    "other-fingerprint": ("FAILED_PRECONDITION", "context: ciphertext was encrypted under another context"),
}


def mutate(request: pb.DecryptAggregateRequest, how: str, data: st.DataObject) -> bytes:
    """A copy of a valid, correctly signed request broken in one way, serialised."""
    bad = pb.DecryptAggregateRequest()
    bad.CopyFrom(request)
    chunk = bytes(bad.aggregate.chunks[0])
    if how == "truncate-chunk":
        bad.aggregate.chunks[0] = chunk[: data.draw(st.integers(1, len(chunk) - 1), label="cut")]
    elif how == "random-chunk":
        bad.aggregate.chunks[0] = data.draw(st.binary(min_size=1, max_size=4096), label="chunk")
    elif how == "empty-chunk":
        bad.aggregate.chunks[0] = b""
    elif how == "extra-chunk":
        bad.aggregate.chunks.append(chunk)
    elif how == "no-chunk":
        del bad.aggregate.chunks[:]
    elif how == "count+1":
        bad.count += 1
    elif how == "length+1":
        bad.aggregate.length += 1
    elif how == "truncate-message":
        whole = bad.SerializeToString()
        return whole[: data.draw(st.integers(0, len(whole) - 1), label="cut")]
    elif how == "other-step":
        bad.step_id = data.draw(st.from_regex(r"[A-Za-z0-9]{1,20}", fullmatch=True), label="step") + "-x"
    elif how == "flip-signature":
        i = data.draw(st.integers(0, len(bad.contributors) - 1), label="who")
        signature = bytearray(bad.contributors[i].signature)
        signature[data.draw(st.integers(0, len(signature) - 1), label="byte")] ^= 1
        bad.contributors[i].signature = bytes(signature)
    elif how == "swap-digest":
        bad.contributors[0].ciphertext_digest = bad.contributors[1].ciphertext_digest
    elif how == "drop-contributor":
        del bad.contributors[1:]
    elif how == "duplicate-contributor":
        bad.contributors.append(bad.contributors[0])
    elif how == "nan-weight":
        bad.weights.max_weight = float("nan")
    elif how == "heavy-weight":
        bad.weights.max_weight = 0.9
    elif how == "row-sum":
        bad.weights.max_row_sum = 1.01
    elif how == "other-fingerprint":
        bad.aggregate.context_fingerprint = bytes(32)
    return bad.SerializeToString()


def test_a_signed_request_broken_in_any_one_way_is_refused_and_its_step_id_stays_usable(
    deployment: Deployment,
) -> None:
    step = "hostile-signed-1"
    scores = RNG.random((3, 6))
    request = make_request(deployment.federation, deployment.public, step, scores, uniform(3, 6))
    before = deployment.keyholder_state()

    @settings(max_examples=50, deadline=None)
    @given(how=st.sampled_from(MUTATIONS), data=st.data())
    def property_(how: str, data: st.DataObject) -> None:
        refusals = deployment.refusals_logged()
        code, details = send_decrypt(deployment, mutate(request, how, data))
        wanted_code, wanted_start = EXPECTED[how]
        assert code.name == wanted_code, (how, details)
        assert details.startswith(wanted_start), (how, details)
        assert deployment.keyholder_state() == before
        assert deployment.refusals_logged() == refusals + 1

    property_()
    # Nothing was consumed: the intact request is decrypted once, then refused as a replay.
    reply = pb.keyholder_stub(deployment.channel("server")).DecryptAggregate(request, timeout=30)
    np.testing.assert_allclose(reply.values, scores.mean(axis=0), atol=1e-5)
    code, details = send_decrypt(deployment, request.SerializeToString())
    assert code == grpc.StatusCode.ALREADY_EXISTS, details
    log, decrypted = deployment.keyholder_state()
    assert decrypted == before[1] | {step}
    assert log.startswith(before[0])
    assert log.count(b"\n") == before[0].count(b"\n") + 1


def test_a_client_sending_garbage_to_decrypt_is_refused_for_who_it_is_first(
    deployment: Deployment,
) -> None:
    """Authorisation comes before parsing: a client learns nothing about what would parse."""
    before = deployment.keyholder_state()
    raw = deployment.raw_unary("DecryptAggregate", party="clients/bob")
    for data in (b"\xff\xff", pb.DecryptAggregateRequest(step_id="x").SerializeToString()):
        code, details, _ = status(lambda d=data: raw(d, timeout=CALL_TIMEOUT))  # type: ignore[misc]
        assert (code, details) == (grpc.StatusCode.PERMISSION_DENIED, "caller: only 'server' may decrypt")
    assert deployment.keyholder_state() == before


@pytest.mark.parametrize("method", ["GetPublicContext", "DecryptAggregate"])
def test_keyholder_messages_above_the_cap_are_refused_before_any_handler(
    deployment: Deployment, method: str
) -> None:
    before, refusals = deployment.keyholder_state(), deployment.refusals_logged()
    oversize = b"\x0a" + b"\x80\x80\x80\x01" + b"a" * (KH_CAP + 1)  # one huge string field
    code, details, _ = status(lambda: deployment.raw_unary(method)(oversize, timeout=CALL_TIMEOUT))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
    assert f"larger than max ({len(oversize)} vs. {KH_CAP})" in details
    assert deployment.keyholder_state() == before
    assert deployment.refusals_logged() == refusals  # gRPC refuses it: no handler ran (SECURITY.md)
    assert_keyholder_still_answers(deployment)


# --- Federation.Connect --------------------------------------------------------------------------------


class Stream:
    """One raw ``Connect`` stream: sends the given byte strings, then keeps the stream open until closed."""

    def __init__(
        self,
        deployment: Deployment,
        payloads: list[bytes],
        timeout: float = CALL_TIMEOUT,
        party: str = "clients/alice",
        heartbeats: bool = False,
    ) -> None:
        self._close, self.heartbeats = threading.Event(), heartbeats
        self.call = deployment.raw_connect(party)(self._messages(payloads), timeout=timeout)

    def _messages(self, payloads: list[bytes]) -> Iterator[bytes]:
        yield from payloads
        while self.heartbeats and not self._close.wait(0.3):  # the server drops a silent client after 3 s
            yield sp.ClientMessage(heartbeat=sp.Heartbeat(sent_unix_ms=1)).SerializeToString()
        self._close.wait(600)

    def outcome(self) -> tuple[grpc.StatusCode, str, list[bytes]]:
        """Read the stream to its end; return the status, details and the messages received."""
        received: list[bytes] = []
        try:
            received.extend(self.call)
        except grpc.RpcError as error:
            return error.code(), error.details() or "", received
        finally:
            self._close.set()
        return grpc.StatusCode.OK, "", received

    def first(self) -> bytes:
        message: bytes = next(self.call)
        return message

    def close(self) -> None:
        self._close.set()


def hello(identity: str = "client:alice", **fields: Any) -> sp.ClientMessage:
    values: dict[str, Any] = {
        "identity": identity,
        "protocol_version": sp.PROTOCOL_VERSION,
        "architecture": "test",
        "max_rollouts": 8,
        "context_fingerprint": b"",
        "private": True,
    }
    values.update({name: value for name, value in fields.items() if value is not None})
    return sp.ClientMessage(hello=sp.Hello(**values))


HASH_CHARS = "0123456789abcdef"


def ledger_heads(federation: Federation) -> st.SearchStrategy[sp.LedgerHead | None]:
    """No announcement, alice's own signed head, or a head broken in its seq, hash or signature."""
    alice = client_key(federation, "alice")

    def signed(seq: int, entry_hash: str) -> sp.LedgerHead:
        signature = alice.sign(ledger_head_message("client:alice", seq, entry_hash))
        return sp.LedgerHead(seq=seq, entry_hash=entry_hash, signature=signature)

    hashes = st.text(HASH_CHARS, min_size=64, max_size=64)
    seqs = st.integers(0, 2**63 - 1)
    return st.one_of(
        st.none(),
        st.builds(signed, seqs, hashes),
        st.builds(
            sp.LedgerHead,
            seq=st.integers(0, 2**64 - 1),
            entry_hash=hashes | st.text(max_size=80),
            signature=st.binary(min_size=64, max_size=64) | st.binary(max_size=80),
        ),
    )


def expected_head_refusal(deployment: Deployment, head: sp.LedgerHead) -> tuple[grpc.StatusCode, str]:
    """The status a Hello from alice with ``head`` must get (OK: the head is well formed and hers)."""
    if len(head.signature) != 64:
        return grpc.StatusCode.INVALID_ARGUMENT, "Hello.ledger_head.signature: expected 64 bytes"
    if head.seq > 2**63 - 1:
        return grpc.StatusCode.INVALID_ARGUMENT, "Hello.ledger_head.seq: expected an integer in [0, 2^63)"
    if len(head.entry_hash) != 64 or any(c not in HASH_CHARS for c in head.entry_hash):
        return grpc.StatusCode.INVALID_ARGUMENT, "Hello.ledger_head.entry_hash: expected 64 lowercase hex"
    alice = load_trust(deployment.federation.root / "server" / "trust.toml")["client:alice"]
    if not alice.verify(head.signature, ledger_head_message("client:alice", head.seq, head.entry_hash)):
        return grpc.StatusCode.PERMISSION_DENIED, "Hello.ledger_head: the signature over (seq"
    return grpc.StatusCode.OK, ""


def expected_hello_refusal(deployment: Deployment, data: bytes) -> tuple[grpc.StatusCode, str]:
    """The status ``Connect`` must end a stream with when its first message is ``data`` (OK: accepted)."""
    try:
        message = sp.ClientMessage.FromString(data)
    except Exception:
        return grpc.StatusCode.INVALID_ARGUMENT, "the request is not a valid secure_mor.v1.ClientMessage"
    if message.WhichOneof("body") != "hello":
        return grpc.StatusCode.FAILED_PRECONDITION, "the first message of a stream must be Hello"
    if message.hello.identity != "client:alice":
        return grpc.StatusCode.PERMISSION_DENIED, "Hello.identity "
    if message.hello.protocol_version != sp.PROTOCOL_VERSION:
        return grpc.StatusCode.FAILED_PRECONDITION, f"protocol_version {message.hello.protocol_version}"
    if message.hello.context_fingerprint != deployment.public.fingerprint:
        return grpc.StatusCode.FAILED_PRECONDITION, "the client encrypts under another public context"
    if message.hello.HasField("ledger_head"):
        return expected_head_refusal(deployment, message.hello.ledger_head)
    return grpc.StatusCode.OK, ""


def wait_online(deployment: Deployment, expected: tuple[str, ...], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while deployment.endpoint.service.online() != expected and time.monotonic() < deadline:
        time.sleep(0.02)
    assert deployment.endpoint.service.online() == expected


@pytest.fixture(scope="module")
def bystander(deployment: Deployment) -> Iterator[Stream]:
    """client:bob, connected properly for the whole module: hostile streams must not disturb it."""
    good = hello("client:bob", context_fingerprint=deployment.public.fingerprint).SerializeToString()
    stream = Stream(deployment, [good], timeout=600, party="clients/bob", heartbeats=True)
    assert sp.ServerMessage.FromString(stream.first()).WhichOneof("body") == "roster"
    yield stream
    stream.close()
    stream.call.cancel()


first_messages = st.one_of(
    st.builds(
        hello,
        identity=st.sampled_from(["client:alice", "client:bob", "server", "client:alice ", ""])
        | st.text(max_size=20)
        | huge_text,
        protocol_version=st.sampled_from([1, 1, 0, 2]) | st.integers(0, 2**32 - 1),
        context_fingerprint=st.sampled_from([b"", b"\x00" * 32]) | st.binary(max_size=40),
        architecture=st.text(max_size=100),
        max_rollouts=st.integers(0, 2**32 - 1),
    ),
    st.builds(sp.ClientMessage),
    st.builds(
        sp.ClientMessage, heartbeat=st.builds(sp.Heartbeat, sent_unix_ms=st.integers(-(2**63), 2**63 - 1))
    ),
    st.builds(
        sp.ClientMessage, error=st.builds(sp.Error, step_id=st.text(max_size=50), code=st.text(max_size=20))
    ),
    st.builds(sp.ClientMessage, score=st.builds(sp.ScoreReply, step_id=st.text(max_size=50))),
).map(lambda m: m.SerializeToString())


@FUZZ
@given(data=first_messages | st.binary(max_size=300), good_fingerprint=st.booleans())
def test_a_stream_must_open_with_a_valid_hello_and_a_refusal_changes_no_roster(
    deployment: Deployment, bystander: Stream, data: bytes, good_fingerprint: bool
) -> None:
    if good_fingerprint:  # half of the Hellos carry the right fingerprint, to reach the later rules
        try:
            message = sp.ClientMessage.FromString(data)
        except Exception:
            pass
        else:
            if message.WhichOneof("body") == "hello":
                message.hello.context_fingerprint = deployment.public.fingerprint
                data = message.SerializeToString()
    wanted, fragment = expected_hello_refusal(deployment, data)
    stream = Stream(deployment, [data])
    if wanted == grpc.StatusCode.OK:
        roster = sp.ServerMessage.FromString(stream.first()).roster
        assert roster.run_id == "hostile"
        assert "client:alice" in roster.clients
        stream.close()
        assert stream.outcome()[0] == grpc.StatusCode.OK
    else:
        code, details, received = stream.outcome()
        assert (code, received) == (wanted, []), details
        assert fragment in details
        assert len(details) <= MAX_DETAILS
    wait_online(deployment, ("client:bob",))


@FUZZ
@given(data=st.data())
def test_a_hello_announcing_a_malformed_or_unsigned_ledger_head_is_refused_and_changes_no_roster(
    deployment: Deployment, bystander: Stream, data: st.DataObject
) -> None:
    head = data.draw(ledger_heads(deployment.federation))
    message = hello(context_fingerprint=deployment.public.fingerprint, ledger_head=head).SerializeToString()
    wanted, fragment = expected_hello_refusal(deployment, message)
    stream = Stream(deployment, [message])
    if wanted == grpc.StatusCode.OK:
        assert sp.ServerMessage.FromString(stream.first()).WhichOneof("body") == "roster"
        stream.close()
        assert stream.outcome()[0] == grpc.StatusCode.OK
    else:
        code, details, received = stream.outcome()
        assert (code, received) == (wanted, []), details
        assert details.startswith(fragment), details
        assert len(details) <= MAX_DETAILS
    wait_online(deployment, ("client:bob",))


unsolicited = st.one_of(
    st.builds(
        sp.ClientMessage, heartbeat=st.builds(sp.Heartbeat, sent_unix_ms=st.integers(-(2**63), 2**63 - 1))
    ),
    st.builds(
        sp.ClientMessage,
        score=st.builds(
            sp.ScoreReply,
            step_id=st.text(max_size=200),
            score_seconds=st.floats(allow_nan=True),
            scores=st.builds(pb.EncryptedVector, length=st.integers(0, 2**64 - 1)),
        ),
    ),
    st.builds(sp.ClientMessage, error=st.builds(sp.Error, step_id=st.text(max_size=50), message=st.text())),
    st.builds(
        sp.ClientMessage,
        calibration=st.builds(sp.CalibrationReply, request_id=st.text(max_size=50)),
    ),
)
violations = st.one_of(
    st.just((b"", grpc.StatusCode.INVALID_ARGUMENT, "a ClientMessage must carry one of its body fields")),
    st.just((hello().SerializeToString(), grpc.StatusCode.FAILED_PRECONDITION, "Hello was already received")),
    st.binary(min_size=1, max_size=200)
    .filter(lambda b: _does_not_parse(sp.ClientMessage, b))
    .map(lambda b: (b, grpc.StatusCode.INVALID_ARGUMENT, "not a valid secure_mor.v1.ClientMessage protobuf")),
    st.just((b"\x0a\x05ab", grpc.StatusCode.INVALID_ARGUMENT, "not a valid secure_mor.v1.ClientMessage")),
)


def _does_not_parse(message_type: Any, data: bytes) -> bool:
    try:
        message_type.FromString(data)
    except Exception:
        return True
    return False


@FUZZ
@given(before=st.lists(unsolicited, max_size=3), violation=violations)
def test_after_hello_unsolicited_answers_are_ignored_and_protocol_violations_end_only_that_stream(
    deployment: Deployment,
    bystander: Stream,
    before: list[sp.ClientMessage],
    violation: tuple[bytes, grpc.StatusCode, str],
) -> None:
    good = hello(context_fingerprint=deployment.public.fingerprint).SerializeToString()
    data, wanted, fragment = violation
    stream = Stream(deployment, [good, *(m.SerializeToString() for m in before), data])
    code, details, received = stream.outcome()
    assert code == wanted, details
    assert fragment in details
    assert sp.ServerMessage.FromString(received[0]).WhichOneof("body") == "roster"
    wait_online(deployment, ("client:bob",))  # alice's stream is gone, bob's is untouched


def test_messages_above_the_cap_end_the_stream_with_resource_exhausted(
    deployment: Deployment, bystander: Stream
) -> None:
    huge = hello(architecture="a" * FED_CAP, context_fingerprint=deployment.public.fingerprint)
    good = hello(context_fingerprint=deployment.public.fingerprint)
    for payloads in ([huge], [good, huge]):
        code, details, _ = Stream(deployment, [m.SerializeToString() for m in payloads]).outcome()
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
        assert f"vs. {FED_CAP})" in details
        wait_online(deployment, ("client:bob",))
    accepted = Stream(deployment, [good.SerializeToString()])
    assert sp.ServerMessage.FromString(accepted.first()).WhichOneof("body") == "roster"
    accepted.close()
    accepted.outcome()
    wait_online(deployment, ("client:bob",))


def test_a_stream_that_never_says_hello_ends_at_its_deadline_and_frees_the_server(
    deployment: Deployment, bystander: Stream
) -> None:
    started = time.monotonic()
    code, _, received = Stream(deployment, [], timeout=1.0).outcome()
    assert (code, received) == (grpc.StatusCode.DEADLINE_EXCEEDED, [])
    assert time.monotonic() - started < 15  # the deadline is 1 s; generous for a loaded CI machine
    wait_online(deployment, ("client:bob",))
    good = Stream(deployment, [hello(context_fingerprint=deployment.public.fingerprint).SerializeToString()])
    assert sp.ServerMessage.FromString(good.first()).WhichOneof("body") == "roster"
    good.close()
    good.outcome()


def test_unknown_service_paths_are_unimplemented(deployment: Deployment) -> None:
    raw: grpc.UnaryUnaryMultiCallable[Any, Any] = deployment.channel("server").unary_unary(
        KEYHOLDER + "Encrypt"
    )
    code, _, _ = status(lambda: raw(b"", timeout=CALL_TIMEOUT))
    assert code == grpc.StatusCode.UNIMPLEMENTED
    assert_keyholder_still_answers(deployment)
