from secure_mor.protocol import federation_pb2 as _federation_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClientMessage(_message.Message):
    __slots__ = ("hello", "score", "calibration", "heartbeat", "error")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    score: ScoreReply
    calibration: CalibrationReply
    heartbeat: Heartbeat
    error: Error
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., score: _Optional[_Union[ScoreReply, _Mapping]] = ..., calibration: _Optional[_Union[CalibrationReply, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class ServerMessage(_message.Message):
    __slots__ = ("roster", "task", "calibration", "heartbeat", "error")
    ROSTER_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    roster: Roster
    task: ScoringTask
    calibration: CalibrationRequest
    heartbeat: Heartbeat
    error: Error
    def __init__(self, roster: _Optional[_Union[Roster, _Mapping]] = ..., task: _Optional[_Union[ScoringTask, _Mapping]] = ..., calibration: _Optional[_Union[CalibrationRequest, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("identity", "protocol_version", "architecture", "max_rollouts", "context_fingerprint", "private", "ledger_head")
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    MAX_ROLLOUTS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_FIELD_NUMBER: _ClassVar[int]
    LEDGER_HEAD_FIELD_NUMBER: _ClassVar[int]
    identity: str
    protocol_version: int
    architecture: str
    max_rollouts: int
    context_fingerprint: bytes
    private: bool
    ledger_head: LedgerHead
    def __init__(self, identity: _Optional[str] = ..., protocol_version: _Optional[int] = ..., architecture: _Optional[str] = ..., max_rollouts: _Optional[int] = ..., context_fingerprint: _Optional[bytes] = ..., private: _Optional[bool] = ..., ledger_head: _Optional[_Union[LedgerHead, _Mapping]] = ...) -> None: ...

class LedgerHead(_message.Message):
    __slots__ = ("seq", "entry_hash", "signature")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ENTRY_HASH_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    entry_hash: str
    signature: bytes
    def __init__(self, seq: _Optional[int] = ..., entry_hash: _Optional[str] = ..., signature: _Optional[bytes] = ...) -> None: ...

class Roster(_message.Message):
    __slots__ = ("run_id", "clients", "heartbeat_seconds", "context_fingerprint")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENTS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    clients: _containers.RepeatedScalarFieldContainer[str]
    heartbeat_seconds: float
    context_fingerprint: bytes
    def __init__(self, run_id: _Optional[str] = ..., clients: _Optional[_Iterable[str]] = ..., heartbeat_seconds: _Optional[float] = ..., context_fingerprint: _Optional[bytes] = ...) -> None: ...

class Rollout(_message.Message):
    __slots__ = ("image_bytes", "image_ref", "question", "answer")
    IMAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    IMAGE_REF_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    image_bytes: bytes
    image_ref: str
    question: str
    answer: str
    def __init__(self, image_bytes: _Optional[bytes] = ..., image_ref: _Optional[str] = ..., question: _Optional[str] = ..., answer: _Optional[str] = ...) -> None: ...

class ScoringTask(_message.Message):
    __slots__ = ("step_id", "rollouts", "images")
    class ImagesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    ROLLOUTS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    step_id: str
    rollouts: _containers.RepeatedCompositeFieldContainer[Rollout]
    images: _containers.ScalarMap[str, bytes]
    def __init__(self, step_id: _Optional[str] = ..., rollouts: _Optional[_Iterable[_Union[Rollout, _Mapping]]] = ..., images: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class ScoreReply(_message.Message):
    __slots__ = ("step_id", "scores", "contribution", "score_seconds", "encrypt_seconds")
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    SCORE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ENCRYPT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    step_id: str
    scores: _federation_pb2.EncryptedVector
    contribution: _federation_pb2.Contribution
    score_seconds: float
    encrypt_seconds: float
    def __init__(self, step_id: _Optional[str] = ..., scores: _Optional[_Union[_federation_pb2.EncryptedVector, _Mapping]] = ..., contribution: _Optional[_Union[_federation_pb2.Contribution, _Mapping]] = ..., score_seconds: _Optional[float] = ..., encrypt_seconds: _Optional[float] = ...) -> None: ...

class CalibrationItem(_message.Message):
    __slots__ = ("image_bytes", "image_ref", "question", "chosen", "rejected", "cluster")
    IMAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    IMAGE_REF_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    image_bytes: bytes
    image_ref: str
    question: str
    chosen: str
    rejected: str
    cluster: int
    def __init__(self, image_bytes: _Optional[bytes] = ..., image_ref: _Optional[str] = ..., question: _Optional[str] = ..., chosen: _Optional[str] = ..., rejected: _Optional[str] = ..., cluster: _Optional[int] = ...) -> None: ...

class CalibrationRequest(_message.Message):
    __slots__ = ("request_id", "items", "images")
    class ImagesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    items: _containers.RepeatedCompositeFieldContainer[CalibrationItem]
    images: _containers.ScalarMap[str, bytes]
    def __init__(self, request_id: _Optional[str] = ..., items: _Optional[_Iterable[_Union[CalibrationItem, _Mapping]]] = ..., images: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class ClusterAccuracy(_message.Message):
    __slots__ = ("cluster", "accuracy", "count")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    cluster: int
    accuracy: float
    count: int
    def __init__(self, cluster: _Optional[int] = ..., accuracy: _Optional[float] = ..., count: _Optional[int] = ...) -> None: ...

class CalibrationReply(_message.Message):
    __slots__ = ("request_id", "clusters")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    clusters: _containers.RepeatedCompositeFieldContainer[ClusterAccuracy]
    def __init__(self, request_id: _Optional[str] = ..., clusters: _Optional[_Iterable[_Union[ClusterAccuracy, _Mapping]]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("sent_unix_ms",)
    SENT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    sent_unix_ms: int
    def __init__(self, sent_unix_ms: _Optional[int] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("step_id", "code", "message")
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    step_id: str
    code: str
    message: str
    def __init__(self, step_id: _Optional[str] = ..., code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...
