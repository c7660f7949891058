"""The client's retries, feedback event ids and bearer token, against a real gRPC server on a free
loopback port whose servicer fails the first calls on demand and records what it was sent."""

import uuid
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ltrr import cli
from ltrr.client import FEEDBACK_NAMESPACE, TIMEOUT_METADATA, LtrrClient, feedback_event_id
from ltrr.v1 import search_pb2 as pb
from ltrr.v1 import search_pb2_grpc as pb_grpc

#: Seconds: each call's deadline, only so that a broken test ends; no call comes near it.
GUARD = 30.0
Code = grpc.StatusCode


class Recorder(pb_grpc.SearchServiceServicer, health_pb2_grpc.HealthServicer):
    """Fails the next calls with the codes in ``fail`` (one each, in order), then answers; records
    ``(method, request, metadata)`` of every call."""

    def __init__(self) -> None:
        self.fail: list[grpc.StatusCode] = []
        self.calls: list[tuple[str, object, dict[str, str]]] = []
        self.target = ""

    def _record(self, method: str, request: object, context: grpc.ServicerContext) -> None:
        self.calls.append((method, request, dict(context.invocation_metadata())))
        if self.fail:
            code = self.fail.pop(0)
            context.abort(code, f"injected {code.name}")

    def Search(self, request, context):
        self._record("Search", request, context)
        return pb.SearchResponse(request_id="r1")

    def Feedback(self, request, context):
        self._record("Feedback", request, context)
        return pb.FeedbackResponse(duplicate=False)

    def Check(self, request, context):
        self._record("Check", request, context)
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    def methods(self) -> list[str]:
        return [m for m, _, _ in self.calls]

    def event_ids(self) -> list[str]:
        return [r.event_id for m, r, _ in self.calls if m == "Feedback"]

    def auth(self) -> list[str | None]:
        return [md.get("authorization") for _, _, md in self.calls]


@pytest.fixture
def server():
    rec = Recorder()
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_SearchServiceServicer_to_server(rec, srv)
    health_pb2_grpc.add_HealthServicer_to_server(rec, srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    rec.target = f"127.0.0.1:{port}"
    yield rec
    srv.stop(None)


@pytest.fixture(autouse=True)
def no_ambient_token(monkeypatch, tmp_path):
    """No token from the developer's environment or checkout: an empty LTRR_HOME, no LTRR_TOKEN."""
    monkeypatch.delenv("LTRR_TOKEN", raising=False)
    monkeypatch.setenv("LTRR_HOME", str(tmp_path / "home"))


@pytest.fixture
def client(server):
    """A client that records its backoff sleeps instead of sleeping."""
    slept: list[float] = []
    made: list[LtrrClient] = []

    def make(**kw):
        c = LtrrClient(server.target, **{"timeout": GUARD, "sleep": slept.append, **kw})
        c.slept = slept
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


# -- retries --------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED, Code.RESOURCE_EXHAUSTED])
def test_feedback_retries_a_transient_failure_with_the_same_event_id(server, client, code):
    server.fail = [code, code]
    c = client()
    assert c.feedback("r1", "a", "click", position=2).duplicate is False
    assert server.methods() == ["Feedback"] * 3
    assert server.event_ids() == [feedback_event_id("r1", "a", "click", 2)] * 3
    # full jitter: retry i sleeps U(0, min(max_backoff_s, backoff_s * 2 ** (i - 1))) = U(0, 0.1), U(0, 0.2)
    assert len(c.slept) == 2 and 0.0 <= c.slept[0] <= 0.1 and 0.0 <= c.slept[1] <= 0.2


def test_feedback_gives_up_after_the_attempt_bound(server, client):
    server.fail = [Code.UNAVAILABLE] * 5
    c = client(attempts=4)
    with pytest.raises(grpc.RpcError) as ei:
        c.feedback("r1", "a")
    assert ei.value.code() == Code.UNAVAILABLE
    assert server.methods() == ["Feedback"] * 4 and len(set(server.event_ids())) == 1
    assert len(c.slept) == 3
    server.calls.clear()
    with pytest.raises(grpc.RpcError):
        client(attempts=1).feedback("r1", "a")  # one attempt: no retry at all
    assert server.methods() == ["Feedback"]


@pytest.mark.parametrize("call", ["search", "feedback"])
@pytest.mark.parametrize("code", [Code.INVALID_ARGUMENT, Code.NOT_FOUND, Code.UNAUTHENTICATED, Code.INTERNAL])
def test_a_non_transient_failure_is_not_retried(server, client, call, code):
    server.fail = [code]
    c = client()
    with pytest.raises(grpc.RpcError) as ei:
        c.search("q") if call == "search" else c.feedback("r1", "a")
    assert ei.value.code() == code
    assert len(server.calls) == 1 and c.slept == []


def test_search_retries_unavailable_only(server, client):
    c = client()
    server.fail = [Code.UNAVAILABLE, Code.UNAVAILABLE]
    assert c.search("q").request_id == "r1"
    assert server.methods() == ["Search"] * 3
    for code in (Code.DEADLINE_EXCEEDED, Code.RESOURCE_EXHAUSTED):  # the server may have logged it: not resent
        server.calls.clear()
        server.fail = [code]
        with pytest.raises(grpc.RpcError) as ei:
            c.search("q")
        assert ei.value.code() == code and server.methods() == ["Search"]


def test_backoff_is_exponential_with_full_jitter_and_capped(client):
    c = client(backoff_s=0.1, max_backoff_s=0.5)
    for retry, cap in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.5), (9, 0.5)]:
        draws = [c.backoff(retry) for _ in range(200)]
        assert all(0.0 <= d <= cap for d in draws)
        assert max(draws) > cap / 2, "drawn over the whole range, not a fixed delay"
    assert client(backoff_s=0.0).backoff(3) == 0.0


# -- event ids ----------------------------------------------------------------------------------------


def test_an_explicit_event_id_is_sent_as_is_on_every_attempt(server, client):
    server.fail = [Code.UNAVAILABLE]
    client().feedback("r1", "a", "play", event_id="my-own-id-1")
    assert server.event_ids() == ["my-own-id-1", "my-own-id-1"]


def test_the_derived_event_id_is_stable_across_calls_and_documented(server, client):
    c = client()
    c.feedback("r1", "a", "click", position=2)
    c.feedback("r1", "a", "click", position=2)  # the caller sends the same click again
    c.feedback(" r1 ", "a", " Click", position=2)  # as the server normalises it: the same event
    c.feedback("r1", "a", "click", position=3)  # another position: another event
    c.feedback("r1", "a", "play", position=2)  # another action: another event
    ids = server.event_ids()
    expected = uuid.uuid5(FEEDBACK_NAMESPACE, "r1\x1fa\x1fclick\x1f2").hex
    assert ids[:3] == [expected] * 3
    assert len({expected, ids[3], ids[4]}) == 3


# -- token and deadline metadata ----------------------------------------------------------------------------


def all_calls(c: LtrrClient) -> None:
    c.search("q")
    c.feedback("r1", "a")
    c.health()


def write_token_file(home, text):
    path = home / "var" / "secrets" / "ltrr-token"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return path


def test_the_token_comes_from_ltrr_token(server, client, monkeypatch, tmp_path):
    write_token_file(tmp_path / "home", "file-token-0123456789\n")
    monkeypatch.setenv("LTRR_TOKEN", "env-token-0123456789\n")
    all_calls(client())
    assert server.methods() == ["Search", "Feedback", "Check"]
    assert server.auth() == ["Bearer env-token-0123456789"] * 3  # the variable wins over the file


@pytest.mark.parametrize("where", ["LTRR_HOME", "cwd"])
def test_the_token_comes_from_the_token_file(server, client, monkeypatch, tmp_path, where):
    home = tmp_path / ("home" if where == "LTRR_HOME" else "checkout")
    write_token_file(home, "# written by make up\n\nfile-token-0123456789 admin\nsecond-token-0123456789\n")
    if where == "cwd":
        monkeypatch.delenv("LTRR_HOME")
        monkeypatch.chdir(home)
    all_calls(client())
    assert server.auth() == ["Bearer file-token-0123456789"] * 3  # the first token, without its scopes


def test_an_explicit_token_wins_and_an_empty_one_sends_none(server, client, monkeypatch):
    monkeypatch.setenv("LTRR_TOKEN", "env-token-0123456789")
    all_calls(client(token="arg-token-0123456789"))
    assert server.auth() == ["Bearer arg-token-0123456789"] * 3
    server.calls.clear()
    all_calls(client(token=""))
    assert server.auth() == [None] * 3


def test_without_any_token_no_authorization_is_sent_but_the_deadline_is(server, client):
    all_calls(client(timeout=2.5))
    assert server.auth() == [None] * 3
    assert [md[TIMEOUT_METADATA] for _, _, md in server.calls] == ["2500"] * 3


def test_the_cli_sends_the_token_of_token_file(server, tmp_path, capsys):
    path = tmp_path / "token"
    path.write_text("cli-token-0123456789 search\n")
    assert cli.main(["search", "q", "--target", server.target, "--token-file", str(path)]) == 0
    assert cli.main(["health", "--target", server.target, "--token-file", str(path)]) == 0
    assert server.methods()[:2] == ["Search", "Check"]
    assert set(server.auth()) == {"Bearer cli-token-0123456789"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "error: --token-file: cannot read '{path}': [Errno 2] No such file or directory: '{path}'"),
        ("# only a comment\n\n", "error: --token-file: '{path}' holds no token"),
    ],
)
def test_the_cli_refuses_an_unusable_token_file(server, tmp_path, capsys, text, message):
    path = tmp_path / "token"
    if text is not None:
        path.write_text(text)
    for cmd in (["search", "q"], ["health"]):
        assert cli.main([*cmd, "--target", server.target, "--token-file", str(path)]) == 2
        assert capsys.readouterr().err.strip() == message.format(path=path)
    assert server.calls == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"attempts": 0}, "`attempts` must be an integer >= 1, got 0"),
        ({"attempts": True}, "`attempts` must be an integer >= 1, got True"),
        ({"attempts": 2.0}, "`attempts` must be an integer >= 1, got 2.0"),
        ({"timeout": 0}, "`timeout` must be a finite number > 0, got 0"),
        ({"backoff_s": -0.1}, "`backoff_s` must be a finite number >= 0, got -0.1"),
        ({"max_backoff_s": float("inf")}, "`max_backoff_s` must be a finite number >= 0, got inf"),
    ],
)
def test_client_arguments_are_checked(kwargs, message):
    with pytest.raises(ValueError) as ei:
        LtrrClient("127.0.0.1:1", **kwargs)
    assert str(ei.value) == message
