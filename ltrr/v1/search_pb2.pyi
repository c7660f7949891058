from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SearchRequest(_message.Message):
    __slots__ = ("query", "user_id", "k", "entity_types", "context", "strategies", "explain", "budgets")
    class ContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class BudgetsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    QUERY_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    ENTITY_TYPES_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    STRATEGIES_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    query: str
    user_id: str
    k: int
    entity_types: _containers.RepeatedScalarFieldContainer[str]
    context: _containers.ScalarMap[str, str]
    strategies: _containers.RepeatedScalarFieldContainer[str]
    explain: bool
    budgets: _containers.ScalarMap[str, int]
    def __init__(self, query: _Optional[str] = ..., user_id: _Optional[str] = ..., k: _Optional[int] = ..., entity_types: _Optional[_Iterable[str]] = ..., context: _Optional[_Mapping[str, str]] = ..., strategies: _Optional[_Iterable[str]] = ..., explain: _Optional[bool] = ..., budgets: _Optional[_Mapping[str, int]] = ...) -> None: ...

class Result(_message.Message):
    __slots__ = ("entity_id", "entity_type", "title", "subtitle", "score", "retrieved_by", "features")
    class FeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    ENTITY_TYPE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    SUBTITLE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    RETRIEVED_BY_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    entity_id: str
    entity_type: str
    title: str
    subtitle: str
    score: float
    retrieved_by: _containers.RepeatedScalarFieldContainer[str]
    features: _containers.ScalarMap[str, float]
    def __init__(self, entity_id: _Optional[str] = ..., entity_type: _Optional[str] = ..., title: _Optional[str] = ..., subtitle: _Optional[str] = ..., score: _Optional[float] = ..., retrieved_by: _Optional[_Iterable[str]] = ..., features: _Optional[_Mapping[str, float]] = ...) -> None: ...

class StrategyCall(_message.Message):
    __slots__ = ("strategy", "candidates_requested", "candidates_returned", "latency_ms", "status", "propensity", "detail", "candidate_ids")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[StrategyCall.Status]
        OK: _ClassVar[StrategyCall.Status]
        TIMEOUT: _ClassVar[StrategyCall.Status]
        ERROR: _ClassVar[StrategyCall.Status]
        SKIPPED: _ClassVar[StrategyCall.Status]
    STATUS_UNSPECIFIED: StrategyCall.Status
    OK: StrategyCall.Status
    TIMEOUT: StrategyCall.Status
    ERROR: StrategyCall.Status
    SKIPPED: StrategyCall.Status
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_RETURNED_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PROPENSITY_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_IDS_FIELD_NUMBER: _ClassVar[int]
    strategy: str
    candidates_requested: int
    candidates_returned: int
    latency_ms: float
    status: StrategyCall.Status
    propensity: float
    detail: str
    candidate_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, strategy: _Optional[str] = ..., candidates_requested: _Optional[int] = ..., candidates_returned: _Optional[int] = ..., latency_ms: _Optional[float] = ..., status: _Optional[_Union[StrategyCall.Status, str]] = ..., propensity: _Optional[float] = ..., detail: _Optional[str] = ..., candidate_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("request_id", "results", "strategies", "policy_version", "ranker_version", "degraded", "propensity", "context_features")
    class ContextFeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    STRATEGIES_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    RANKER_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    PROPENSITY_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FEATURES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    results: _containers.RepeatedCompositeFieldContainer[Result]
    strategies: _containers.RepeatedCompositeFieldContainer[StrategyCall]
    policy_version: str
    ranker_version: str
    degraded: bool
    propensity: float
    context_features: _containers.ScalarMap[str, float]
    def __init__(self, request_id: _Optional[str] = ..., results: _Optional[_Iterable[_Union[Result, _Mapping]]] = ..., strategies: _Optional[_Iterable[_Union[StrategyCall, _Mapping]]] = ..., policy_version: _Optional[str] = ..., ranker_version: _Optional[str] = ..., degraded: _Optional[bool] = ..., propensity: _Optional[float] = ..., context_features: _Optional[_Mapping[str, float]] = ...) -> None: ...

class FeedbackRequest(_message.Message):
    __slots__ = ("request_id", "event_id", "entity_id", "action", "position")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    event_id: str
    entity_id: str
    action: str
    position: int
    def __init__(self, request_id: _Optional[str] = ..., event_id: _Optional[str] = ..., entity_id: _Optional[str] = ..., action: _Optional[str] = ..., position: _Optional[int] = ...) -> None: ...

class FeedbackResponse(_message.Message):
    __slots__ = ("duplicate",)
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    duplicate: bool
    def __init__(self, duplicate: _Optional[bool] = ...) -> None: ...

class Entity(_message.Message):
    __slots__ = ("entity_id", "entity_type", "title", "subtitle", "genres", "tags", "description", "popularity", "attrs")
    class AttrsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    ENTITY_TYPE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    SUBTITLE_FIELD_NUMBER: _ClassVar[int]
    GENRES_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    POPULARITY_FIELD_NUMBER: _ClassVar[int]
    ATTRS_FIELD_NUMBER: _ClassVar[int]
    entity_id: str
    entity_type: str
    title: str
    subtitle: str
    genres: _containers.RepeatedScalarFieldContainer[str]
    tags: _containers.RepeatedScalarFieldContainer[str]
    description: str
    popularity: float
    attrs: _containers.ScalarMap[str, str]
    def __init__(self, entity_id: _Optional[str] = ..., entity_type: _Optional[str] = ..., title: _Optional[str] = ..., subtitle: _Optional[str] = ..., genres: _Optional[_Iterable[str]] = ..., tags: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ..., popularity: _Optional[float] = ..., attrs: _Optional[_Mapping[str, str]] = ...) -> None: ...

class UpsertSummary(_message.Message):
    __slots__ = ("received", "changed", "indexed", "failed")
    class IndexedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    INDEXED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    received: int
    changed: int
    indexed: _containers.ScalarMap[str, int]
    failed: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, received: _Optional[int] = ..., changed: _Optional[int] = ..., indexed: _Optional[_Mapping[str, int]] = ..., failed: _Optional[_Iterable[str]] = ...) -> None: ...

class WeightedName(_message.Message):
    __slots__ = ("name", "weight")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    name: str
    weight: float
    def __init__(self, name: _Optional[str] = ..., weight: _Optional[float] = ...) -> None: ...

class UserProfile(_message.Message):
    __slots__ = ("user_id", "top_artists", "top_tags")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    TOP_ARTISTS_FIELD_NUMBER: _ClassVar[int]
    TOP_TAGS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    top_artists: _containers.RepeatedCompositeFieldContainer[WeightedName]
    top_tags: _containers.RepeatedCompositeFieldContainer[WeightedName]
    def __init__(self, user_id: _Optional[str] = ..., top_artists: _Optional[_Iterable[_Union[WeightedName, _Mapping]]] = ..., top_tags: _Optional[_Iterable[_Union[WeightedName, _Mapping]]] = ...) -> None: ...

class UpsertUsersSummary(_message.Message):
    __slots__ = ("received", "changed")
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    received: int
    changed: int
    def __init__(self, received: _Optional[int] = ..., changed: _Optional[int] = ...) -> None: ...
