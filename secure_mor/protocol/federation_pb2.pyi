from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CkksParameters(_message.Message):
    __slots__ = ("poly_modulus_degree", "coeff_mod_bit_sizes", "scale_bits")
    POLY_MODULUS_DEGREE_FIELD_NUMBER: _ClassVar[int]
    COEFF_MOD_BIT_SIZES_FIELD_NUMBER: _ClassVar[int]
    SCALE_BITS_FIELD_NUMBER: _ClassVar[int]
    poly_modulus_degree: int
    coeff_mod_bit_sizes: _containers.RepeatedScalarFieldContainer[int]
    scale_bits: int
    def __init__(self, poly_modulus_degree: _Optional[int] = ..., coeff_mod_bit_sizes: _Optional[_Iterable[int]] = ..., scale_bits: _Optional[int] = ...) -> None: ...

class GetPublicContextRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PublicContext(_message.Message):
    __slots__ = ("context", "fingerprint", "parameters", "signer", "signature")
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    SIGNER_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    context: bytes
    fingerprint: bytes
    parameters: CkksParameters
    signer: str
    signature: bytes
    def __init__(self, context: _Optional[bytes] = ..., fingerprint: _Optional[bytes] = ..., parameters: _Optional[_Union[CkksParameters, _Mapping]] = ..., signer: _Optional[str] = ..., signature: _Optional[bytes] = ...) -> None: ...

class EncryptedVector(_message.Message):
    __slots__ = ("context_fingerprint", "length", "chunks")
    CONTEXT_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    context_fingerprint: bytes
    length: int
    chunks: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, context_fingerprint: _Optional[bytes] = ..., length: _Optional[int] = ..., chunks: _Optional[_Iterable[bytes]] = ...) -> None: ...

class Contribution(_message.Message):
    __slots__ = ("identity", "ciphertext_digest", "signature")
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    identity: str
    ciphertext_digest: bytes
    signature: bytes
    def __init__(self, identity: _Optional[str] = ..., ciphertext_digest: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class WeightSummary(_message.Message):
    __slots__ = ("max_weight", "min_row_sum", "max_row_sum")
    MAX_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    MIN_ROW_SUM_FIELD_NUMBER: _ClassVar[int]
    MAX_ROW_SUM_FIELD_NUMBER: _ClassVar[int]
    max_weight: float
    min_row_sum: float
    max_row_sum: float
    def __init__(self, max_weight: _Optional[float] = ..., min_row_sum: _Optional[float] = ..., max_row_sum: _Optional[float] = ...) -> None: ...

class DecryptAggregateRequest(_message.Message):
    __slots__ = ("step_id", "aggregate", "contributors", "weights", "count")
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    AGGREGATE_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTORS_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    step_id: str
    aggregate: EncryptedVector
    contributors: _containers.RepeatedCompositeFieldContainer[Contribution]
    weights: WeightSummary
    count: int
    def __init__(self, step_id: _Optional[str] = ..., aggregate: _Optional[_Union[EncryptedVector, _Mapping]] = ..., contributors: _Optional[_Iterable[_Union[Contribution, _Mapping]]] = ..., weights: _Optional[_Union[WeightSummary, _Mapping]] = ..., count: _Optional[int] = ...) -> None: ...

class DecryptAggregateResponse(_message.Message):
    __slots__ = ("step_id", "values", "log_seq", "log_entry_hash")
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    LOG_SEQ_FIELD_NUMBER: _ClassVar[int]
    LOG_ENTRY_HASH_FIELD_NUMBER: _ClassVar[int]
    step_id: str
    values: _containers.RepeatedScalarFieldContainer[float]
    log_seq: int
    log_entry_hash: str
    def __init__(self, step_id: _Optional[str] = ..., values: _Optional[_Iterable[float]] = ..., log_seq: _Optional[int] = ..., log_entry_hash: _Optional[str] = ...) -> None: ...
