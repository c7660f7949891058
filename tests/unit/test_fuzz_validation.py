"""Fuzzing the request validators: every request either passes or is refused with InvalidRequest naming a field.

Two fuzzers, both deterministic (``derandomize=True``, no example database), over the generated
protobuf classes of ``ltrr.v1`` and the mapping :mod:`deployments.ingress` applies to them: the
functions of :mod:`ltrr.grpc_mapping` themselves (named below :func:`search`, :func:`feedback`,
:func:`entity`, :func:`user`, with the arguments the ingress passes):

* **Structured** (:func:`test_search_requests`, ...): hypothesis builds 10,000 messages per RPC (five
  to an example) with arbitrary text (control characters, NUL, every plane but the surrogates a
  UTF-8 string cannot hold, strings of up to 80,000 characters), int32 extremes, NaN and infinite
  doubles, maps and repeated fields up to past their limits; most fields of a message stay valid,
  so that each rule is reached. Accepted requests must satisfy the documented rules (checked on
  the result).
* **Bytes** (:func:`test_random_bytes`, :func:`test_mutated_messages`): random bytes and mutations of
  valid serialised messages go through ``<Message>.FromString`` and then the validators, about
  110,000 inputs. A ``DecodeError`` counts as refused at decoding.

The only outcomes allowed are success and :class:`~ltrr.errors.InvalidRequest` (``INVALID_ARGUMENT``)
whose field is one of the request's and whose message is short enough for a gRPC status (it travels
in the trailing metadata, about 16 KiB by default; a longer one reaches the client as
``RESOURCE_EXHAUSTED``). Anything else fails the test.
Each test prints its counts (seen with ``-s``) and asserts they add up.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections import Counter
from typing import Any, Callable

import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ltrr import constants as C
from ltrr import grpc_mapping
from ltrr.errors import InvalidRequest
from ltrr.query_understanding import normalize_text
from ltrr.types import ENTITY_TYPES
from ltrr.v1 import search_pb2 as pb
from ltrr.validation import FEEDBACK_ACTIONS, MAX_ID_CHARS

KNOWN = ("lexical", "vector", "graph", "memory")  # the ingress passes the enabled strategies
LADDER = (0, 10, 25, 50, 100)  # the default PolicyConfig.ladder
STRUCTURED = 10_000
PER_EXAMPLE = 5
#: A status message longer than this (gRPC's default 16 KiB metadata limit, with room to spare) is lost.
MAX_MESSAGE_CHARS = 4096

FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    phases=(Phase.explicit, Phase.generate, Phase.shrink),
    suppress_health_check=(HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example),
)


# -- the ingress's mapping of each message to its validator (ltrr.grpc_mapping, as the ingress calls it) ----
def search(r: pb.SearchRequest) -> Any:
    return grpc_mapping.search_params(r, known_strategies=KNOWN, ladder=LADDER)


def user(index: int, m: pb.UserProfile) -> Any:
    return grpc_mapping.user(index, m, None)


feedback = grpc_mapping.feedback_params
entity = grpc_mapping.entity


# -- the oracle -------------------------------------------------------------------------------------
FIELDS = {
    "search": re.compile(r"query|user_id|k|entity_types|context|strategies|budgets|budgets\[\w+\]"),
    "feedback": re.compile(r"request_id|event_id|entity_id|action|position"),
    "entity": re.compile(
        r"entities\[\d+\]\.(entity_id|entity_type|title|subtitle|description|popularity|attrs|(genres|tags)(\[\d+\])?)"
    ),
    "user": re.compile(r"users\[\d+\]\.(user_id|(top_artists|top_tags)(\[\d+\](\.name|\.weight)?)?)"),
}


def outcome(rpc: str, call: Callable[[], Any]) -> str:
    """``"accepted"`` or ``"invalid"``; any other exception propagates (and fails the test)."""
    try:
        accepted(rpc, call())
    except InvalidRequest as exc:
        assert FIELDS[rpc].fullmatch(exc.field), f"{exc.field!r} is not a field of {rpc}"
        assert str(exc) == f"{exc.field}: {exc.message}" and exc.message
        assert len(str(exc)) <= MAX_MESSAGE_CHARS, f"a {len(str(exc))}-character message"
        return "invalid"
    return "accepted"


def _no_controls(text: str) -> bool:
    return not any(unicodedata.category(c) == "Cc" for c in text)


def accepted(rpc: str, p: Any) -> None:
    """What the validators promise about what they let through."""
    if rpc == "search":
        assert 1 <= len(p.query) <= C.MAX_QUERY_CHARS and normalize_text(p.query)
        assert p.query == " ".join(p.query.split()) and _no_controls(p.query)
        assert len(p.user_id) <= C.MAX_USER_ID_CHARS and _no_controls(p.user_id)
        assert 1 <= p.k <= C.MAX_K and set(p.entity_types) <= set(ENTITY_TYPES) and set(p.strategies) <= set(KNOWN)
        assert len(p.context) <= C.MAX_CONTEXT_ENTRIES
        assert all(_no_controls(k + v) and len(v) <= C.MAX_CONTEXT_VALUE_CHARS for k, v in p.context.items())
        assert all(k in LADDER for k in p.budgets.values())
    elif rpc == "feedback":
        for value in (p.request_id, p.event_id, p.entity_id):
            assert 1 <= len(value) <= MAX_ID_CHARS and _no_controls(value)
        assert p.action in FEEDBACK_ACTIONS and 0 <= p.position <= C.MAX_K
    elif rpc == "entity":
        assert p.entity_type in ENTITY_TYPES and p.entity_id.startswith(f"{p.entity_type}:")
        assert len(p.entity_id) <= MAX_ID_CHARS and _no_controls(p.entity_id) and p.title.strip()
        texts = [p.title, p.subtitle, p.description, *p.genres, *p.tags, *p.attrs, *p.attrs.values()]
        assert not any("\x00" in t for t in texts)
        assert len(p.title) <= C.MAX_ENTITY_TITLE_CHARS and len(p.description) <= C.MAX_ENTITY_DESCRIPTION_CHARS
        assert len(p.tags) <= C.MAX_ENTITY_LABELS and len(p.attrs) <= C.MAX_ENTITY_ATTRS
        assert 0.0 <= p.popularity <= 100.0
    else:
        assert p.user_id and _no_controls(p.user_id)


# -- structured requests ----------------------------------------------------------------------------
#: Any code point but the surrogates (a proto3 string is valid UTF-8, so a message cannot hold one).
CHARS = st.characters(exclude_categories=("Cs",))
NASTY = [
    "", " ", "\x00", "a\x00b", "\t", "\r\n", "\x0b\x0c", "\x1b[31m", "\x7f", "\x85", "\x9f", "\xa0",
    "\u200b", "\u2028", "\u202e", "\ufeff", "\u0301", "\U0010ffff", "\U000e0001", "\uf8ff", "\ufffd",
    "!!!", "'", "''", "&", "+", "_", "ß", "ﬃ", "İ", "Ⅻ", "𝔘", "ﾟ", "Ǆ", "ǅ", "\u3000",
    "x" * 64, "x" * 65, "x" * 128, "x" * 129, "x" * 256, "x" * 257, "y" * 512, "y" * 513,
]  # fmt: skip
WORDS = ["radiohead", "Sad  Songs\tfor me", "like Björk", "artist:1", "track:2", "rock", "hip-hop", "R&B"]
PIECES = st.sampled_from([p for p in NASTY if 0 < len(p) <= 4] + ["x", "ab ", "\x00\x01", "é\u0301"])
#: Up to 20,000 repeats of a piece of at most 4 characters: past every limit, under gRPC's 4 MiB message limit.
HUGE = st.builds(lambda piece, n: piece * n, PIECES, st.integers(0, 20_000))
SMALL = st.one_of(st.sampled_from([*NASTY, *WORDS]), st.text(CHARS, max_size=24))


def text(max_size: int = 24) -> st.SearchStrategy[str]:
    """An odd (:data:`NASTY`), a random or a huge string."""
    return st.one_of(st.sampled_from([*NASTY, *WORDS]), st.text(CHARS, max_size=max_size), HUGE)


def field(valid: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A valid value three times in four, else an odd one: requests whose every field is odd are
    refused at their first field, so most requests keep most fields valid."""
    return st.one_of(valid, valid, valid, odd)


def one_of_these(*values: Any) -> st.SearchStrategy[Any]:
    return st.sampled_from(values)


INT32 = st.one_of(
    st.sampled_from([0, 1, 9, 10, 25, 100, 101, 1000, 1001, -1, 2**31 - 1, -(2**31)]),
    st.integers(-(2**31), 2**31 - 1),
)
DOUBLE = st.one_of(st.sampled_from([0.0, 5.0, 100.0, -0.0, 100.000001, -1e-300]), st.floats())


def repeated(item: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    """A few arbitrary items, or one small item many times (past the limits)."""
    return st.one_of(st.lists(item, max_size=4), st.builds(lambda x, n: [x] * n, SMALL, st.integers(0, 200)))


def mapping(value: st.SearchStrategy[Any], small: st.SearchStrategy[Any] = SMALL) -> st.SearchStrategy[dict[str, Any]]:
    """A few arbitrary entries, or many generated keys (past the limits) with one small value."""
    many = st.builds(lambda p, n, v: {f"{p}{i}": v for i in range(n)}, SMALL, st.integers(0, 200), small)
    return st.one_of(st.dictionaries(text(), value, max_size=4), many)


SEARCHES = st.builds(
    pb.SearchRequest,
    query=field(one_of_these(*WORDS, "x" * 256, " & "), text(max_size=40)),
    user_id=field(one_of_these("", "lfm:2", " u1 "), text()),
    k=field(one_of_these(0, 1, 10, 100), INT32),
    # valid values of the maps and lists are picked whole: one hypothesis choice instead of one per item
    entity_types=field(
        one_of_these([], ["artist"], [" Artist ", "track", "artist"], list(ENTITY_TYPES)), repeated(text())
    ),
    context=field(one_of_these({}, {"hour": "21"}, {"device": " mobile\tphone", "hour": ""}), mapping(text())),
    strategies=field(one_of_these([], ["graph"], ["Graph ", "lexical", "graph"], list(KNOWN)), repeated(text())),
    explain=st.booleans(),
    budgets=field(
        one_of_these({}, {"lexical": 10}, {"vector": 100, "graph": 0}, {s: 25 for s in KNOWN}),
        mapping(st.one_of(one_of_these(*LADDER), INT32), INT32),
    ),
)
FEEDBACKS = st.builds(
    pb.FeedbackRequest,
    request_id=field(one_of_these("r1", " 0a1b2c "), text()),
    event_id=field(one_of_these("e1", "x" * 128), text()),
    entity_id=field(one_of_these("artist:1", "track:\u00e9"), text()),
    action=field(one_of_these(*FEEDBACK_ACTIONS, " PLAY "), text()),
    position=field(one_of_these(0, 1, 100), INT32),
)
ENTITY_TYPE = one_of_these(*ENTITY_TYPES)
ENTITIES = st.builds(
    lambda typ, entity_type, rest, **kw: pb.Entity(entity_id=f"{typ}:{rest}", entity_type=entity_type, **kw),
    ENTITY_TYPE,
    field(st.just("artist"), st.one_of(ENTITY_TYPE, text())),  # the id's type, mostly
    field(one_of_these("1", "x" * 100), text()),
    title=field(one_of_these(*WORDS, "t" * 512), text()),
    subtitle=field(one_of_these("", "Artist \u00b7 pop"), text()),
    genres=field(one_of_these([], ["pop"], ["pop", "g" * 128], ["g"] * 64), repeated(text())),
    tags=field(one_of_these([], ["rock"], ["rock", "90s"], ["t" * 128] * 64), repeated(text())),
    description=field(one_of_these("", "Line one.\nLine two."), text(max_size=60)),
    popularity=field(one_of_these(0.0, 5.0, 100.0), DOUBLE),
    attrs=field(
        one_of_these({}, {"album": "OK"}, {"year": "1997", "album": "v" * 1024}, {f"k{i}": "" for i in range(64)}),
        mapping(text()),
    ),
)


def run_structured(rpc: str, strategy: st.SearchStrategy[Any], call: Callable[[Any], Any]) -> Counter[str]:
    """:data:`STRUCTURED` requests, :data:`PER_EXAMPLE` to a hypothesis example (its per-example
    bookkeeping, not the validators, is what costs: about 1 ms an example)."""
    seen: Counter[str] = Counter()

    @settings(FUZZ, max_examples=STRUCTURED // PER_EXAMPLE)
    @given(st.lists(strategy, min_size=PER_EXAMPLE, max_size=PER_EXAMPLE))
    def one(messages: list[Any]) -> None:
        for message in messages:
            seen["requests"] += 1
            seen[outcome(rpc, lambda m=message: call(m))] += 1

    one()
    print(f"\n{rpc}: {dict(seen)}")
    assert seen["requests"] >= STRUCTURED and seen["accepted"] + seen["invalid"] == seen["requests"]
    return seen


def test_search_requests():
    seen = run_structured("search", SEARCHES, search)
    assert seen["accepted"] >= 100 and seen["invalid"] >= 100, "both outcomes exercised"


def test_feedback_requests():
    seen = run_structured("feedback", FEEDBACKS, feedback)
    assert seen["accepted"] >= 100 and seen["invalid"] >= 100


def test_entities():
    seen = run_structured("entity", st.tuples(st.integers(0, 10**6), ENTITIES), lambda im: entity(*im))
    assert seen["accepted"] >= 100 and seen["invalid"] >= 100


# -- bytes ------------------------------------------------------------------------------------------
DECODERS: dict[str, tuple[Any, Callable[[Any], Any]]] = {
    "search": (pb.SearchRequest, search),
    "feedback": (pb.FeedbackRequest, feedback),
    "entity": (pb.Entity, lambda m: entity(0, m)),
    "user": (pb.UserProfile, lambda m: user(0, m)),
}


def decode_and_validate(rpc: str, data: bytes) -> str:
    """``"decode_error"`` (gRPC answers before the handler runs), else the validator's :func:`outcome`."""
    cls, call = DECODERS[rpc]
    try:
        message = cls.FromString(data)
    except DecodeError:
        return "decode_error"
    return outcome(rpc, lambda: call(message))


def _corpus() -> dict[str, list[bytes]]:
    """Valid serialised messages of each type: typical ones, and a seeded spread of odd ones."""
    rnd = random.Random(11)
    odd = [*NASTY, *WORDS, "x" * 300]

    def s() -> str:
        return rnd.choice(odd)

    out: dict[str, list[bytes]] = {k: [] for k in DECODERS}
    for i in range(40):
        typ = ENTITY_TYPES[i % len(ENTITY_TYPES)]
        out["search"].append(
            pb.SearchRequest(
                query=rnd.choice(WORDS) if i % 2 else s(), user_id=s(), k=rnd.choice([0, 10, 101, -5]),
                entity_types=[typ, s()][: i % 3], context={"hour": "21", s(): s()}, strategies=list(KNOWN[: i % 5]),
                explain=bool(i % 2), budgets={KNOWN[i % 4]: rnd.choice(LADDER), s(): rnd.randint(-3, 300)},
            ).SerializeToString(deterministic=True)
        )  # fmt: skip
        out["feedback"].append(
            pb.FeedbackRequest(
                request_id=f"r{i}", event_id=s(), entity_id=f"{typ}:{i}", action=rnd.choice(FEEDBACK_ACTIONS),
                position=rnd.randint(-2, 120),
            ).SerializeToString(deterministic=True)
        )  # fmt: skip
        out["entity"].append(
            pb.Entity(
                entity_id=f"{typ}:{i}", entity_type=typ, title=rnd.choice(WORDS), subtitle=s(), genres=[s(), "pop"],
                tags=["rock"] * (i % 3), description=s() * 3, popularity=rnd.uniform(-5, 105),
                attrs={"album": s(), "year": "1997"},
            ).SerializeToString(deterministic=True)
        )  # fmt: skip
        out["user"].append(
            pb.UserProfile(
                user_id=s(), top_artists=[pb.WeightedName(name=f"artist:{i}", weight=rnd.uniform(-1, 3))],
                top_tags=[pb.WeightedName(name=s(), weight=1.0)],
            ).SerializeToString(deterministic=True)
        )  # fmt: skip
    return out


CORPUS = _corpus()
MUTANTS_PER_EXAMPLE = 100
MUTATION_EXAMPLES = 1_000
RANDOM_BYTES_EXAMPLES = 2_500


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


ODD_UTF8 = [t.encode() for t in [*NASTY, *WORDS, "x" * 5000, "\x00" * 300, "\t\x1b" * 40]]


def mutate(rnd: random.Random, data: bytes, other: bytes) -> bytes:
    """One to four (mostly one) of: flip a bit, set a byte, insert or delete bytes, duplicate or splice
    a chunk, truncate, append a field (random number and wire type, maybe a huge length prefix), or
    append a well-formed string field (numbers 1-9) holding odd UTF-8, which decodes: the last
    occurrence of a scalar field wins, and a repeated or map field gains an entry."""
    buf = bytearray(data)
    for _ in range(rnd.choice((1, 1, 1, 2, 3, 4))):
        op = rnd.randrange(9)
        at = rnd.randint(0, len(buf))
        if op == 0 and buf:
            i = rnd.randrange(len(buf))
            buf[i] ^= 1 << rnd.randrange(8)
        elif op == 1 and buf:
            buf[rnd.randrange(len(buf))] = rnd.choice((0x00, 0x7F, 0x80, 0xFF, rnd.randrange(256)))
        elif op == 2:
            buf[at:at] = rnd.randbytes(rnd.randint(1, 8))
        elif op == 3 and buf:
            del buf[at : at + rnd.randint(1, 8)]
        elif op == 4 and buf:
            j = rnd.randint(at, len(buf))
            buf[j:j] = buf[at:j][:64]
        elif op == 5:
            j = rnd.randint(0, len(other))
            buf[at:] = other[j:]
        elif op == 6:
            del buf[at:]
        elif op == 7:
            key = _varint((rnd.randint(1, 20) << 3) | rnd.choice((0, 1, 2, 5, 3, 4, 6, 7)))
            length = _varint(rnd.choice((0, 1, 5, 2**31, 2**63, rnd.randint(0, 40))))
            buf += key + length + rnd.randbytes(rnd.randint(0, 12))
        else:
            payload = rnd.choice(ODD_UTF8)
            buf += _varint((rnd.randint(1, 9) << 3) | 2) + _varint(len(payload)) + payload
    return bytes(buf)


def test_random_bytes():
    seen: Counter[str] = Counter()

    @settings(FUZZ, max_examples=RANDOM_BYTES_EXAMPLES)
    @given(st.binary(max_size=512))
    def one(data: bytes) -> None:
        for rpc in DECODERS:  # the same bytes sent to every RPC
            seen["inputs"] += 1
            seen[decode_and_validate(rpc, data)] += 1

    one()
    print(f"\nrandom bytes: {dict(seen)}")
    assert seen["inputs"] >= RANDOM_BYTES_EXAMPLES * len(DECODERS)
    assert seen["accepted"] + seen["invalid"] + seen["decode_error"] == seen["inputs"]


def test_mutated_messages():
    seen: Counter[str] = Counter()

    @settings(FUZZ, max_examples=MUTATION_EXAMPLES)
    @given(st.sampled_from(sorted(DECODERS)), st.integers(0, 2**64 - 1))
    def one(rpc: str, seed: int) -> None:
        rnd = random.Random(seed)  # the example's mutants are a function of (rpc, seed): a failure replays
        corpus = CORPUS[rpc]
        for _ in range(MUTANTS_PER_EXAMPLE):
            seen["inputs"] += 1
            seen[decode_and_validate(rpc, mutate(rnd, rnd.choice(corpus), rnd.choice(corpus)))] += 1

    one()
    print(f"\nmutated messages: {dict(seen)}")
    assert seen["inputs"] >= MUTATION_EXAMPLES * MUTANTS_PER_EXAMPLE
    assert seen["accepted"] + seen["invalid"] + seen["decode_error"] == seen["inputs"]
    assert min(seen["accepted"], seen["invalid"], seen["decode_error"]) >= 1000, "every outcome exercised"


@pytest.mark.parametrize("rpc", sorted(DECODERS))
def test_the_corpus_decodes(rpc):
    assert all(decode_and_validate(rpc, data) in ("accepted", "invalid") for data in CORPUS[rpc])
