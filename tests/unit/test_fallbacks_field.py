"""with_fallbacks in the field: retry advice, repeated callables, context windows, status
codes decided the same way in every layer, and the chain flag a balancer reads.

No network: scripted fakes, and a clock the tests move by hand.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import weakref
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

import httpx
import litellm
import pytest

from fixedmodel import (
    CooldownPolicy,
    FallbackPolicy,
    fallback_causes,
    responses,
    with_fallbacks,
    with_load_balancing,
    with_retries,
)
from fixedmodel.middleware._call import call_scope
from fixedmodel.middleware._errors import retry_after
from fixedmodel.middleware.retries import RetryPolicy
from fixedmodel.routing import fallbacks as fallbacks_module
from fixedmodel.routing import is_fallback_worthy
from fixedmodel.routing._chain import has_next_in_chain
from fixedmodel.routing._deployments import cool_for, counts_against
from fixedmodel.testing import (
    CompletionCall,
    Fail,
    FakeACompletion,
    FakeCompletion,
    FakeEmbedding,
)

MESSAGES = [{"role": "user", "content": "Hi"}]


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    fake = Clock()
    monkeypatch.setattr(fallbacks_module, "_clock", fake, raising=False)
    yield fake


# 1. A callable that gave retry advice is skipped until then.


async def test_a_primary_that_said_retry_after_47_is_not_asked_again_until_then(
    clock: Clock,
) -> None:
    primary = FakeACompletion([Fail(429, headers={"retry-after": "47"})], model="a/primary")
    backup = FakeACompletion(lambda call: "from backup", model="b/backup")
    chat = with_fallbacks(primary, backup)
    assert responses.text(await chat(messages=MESSAGES)) == "from backup"
    assert len(primary.calls) == 1
    for seconds in (1.0, 10.0, 20.0, 40.0, 46.9):
        clock.now = 1000.0 + seconds
        with call_scope() as info:
            assert responses.text(await chat(messages=MESSAGES)) == "from backup"
        assert info.route_skips == (("a/primary#0", "retry_after"),)
        assert info.served_by == "b/backup#1"
        assert info.fallbacks_tried == 0
        assert info.route_failures == ()
    assert len(primary.calls) == 1  # Skipped: no request in those 47 s.
    clock.now = 1047.1
    primary.add("primary again")
    with call_scope() as info:
        assert responses.text(await chat(messages=MESSAGES)) == "primary again"
    assert info.route_skips == ()
    assert len(primary.calls) == 2


@pytest.mark.parametrize(
    ("status", "headers", "seconds"),
    [
        (429, {"retry-after-ms": "2500"}, 2.5),
        (503, {"retry-after": "8"}, 8.0),
        (429, {"retry-after": "100000"}, 300.0),  # Capped by max_retry_after.
    ],
)
def test_sync_retry_advice_of_any_kind_skips_for_its_length(
    clock: Clock, status: int, headers: dict[str, str], seconds: float
) -> None:
    primary = FakeCompletion([Fail(status, headers=headers)], model="a/primary")
    backup = FakeCompletion(lambda call: "b", model="b/backup")
    chat = with_fallbacks(primary, backup)
    chat(messages=MESSAGES)
    clock.now = 1000.0 + seconds - 0.01
    chat(messages=MESSAGES)
    assert len(primary.calls) == 1
    clock.now = 1000.0 + seconds + 0.01
    primary.add("back")
    assert responses.text(chat(messages=MESSAGES)) == "back"


class _DictHeadersError(Exception):
    """A hand-written callable's error: a status and a plain dict of the server's headers."""

    def __init__(self, status: int, headers: dict[str, object]) -> None:
        super().__init__(f"HTTP {status}")
        self.status_code = status
        self.response = type("Answer", (), {"status_code": status, "headers": headers})()


def _dict_header_failures() -> list[Exception]:
    litellm_error = litellm.RateLimitError("slow down", llm_provider="openai", model="m")
    litellm_error.litellm_response_headers = {"Retry-After": "47"}  # type: ignore[attr-defined]
    return [
        litellm_error,
        _DictHeadersError(503, {"Retry-After": "47", "Content-Type": "application/json"}),
        _DictHeadersError(429, {"Retry-After-Ms": 47_000}),
    ]


@pytest.mark.parametrize("failure", _dict_header_failures(), ids=["litellm", "503", "ms"])
def test_retry_advice_in_a_plain_dict_is_read_whatever_its_case(
    clock: Clock, failure: Exception
) -> None:
    # Header names are case-insensitive; a plain dict keeps the server's "Retry-After", and
    # the advice was lost: the primary was asked again on the next call, the deployment
    # cooled by the failure count only.
    assert retry_after(failure) == 47.0
    raised = iter([failure])

    def primary_answer(call: CompletionCall) -> object:
        raise next(raised)

    primary = FakeCompletion(primary_answer, model="a/primary")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    backup = FakeCompletion(lambda call: "b", model="b/backup")
    chat = with_fallbacks(primary, backup)
    chat(messages=MESSAGES)
    clock.now += 46.0
    with call_scope() as info:
        assert responses.text(chat(messages=MESSAGES)) == "b"
    assert info.route_skips == (("a/primary#0", "retry_after"),)
    assert len(primary.calls) == 1
    policy = CooldownPolicy(failures=3)
    assert cool_for(failure, policy) == 47.0


class _OwnHeaders(Mapping[str, object]):
    """A Mapping of a caller's own: case-sensitive, as any mapping but httpx's and aiohttp's."""

    def __init__(self, fields: dict[str, object]) -> None:
        self._fields = fields

    def __getitem__(self, name: str) -> object:
        return self._fields[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)


class _MappingHeadersError(Exception):
    """A hand-written callable's error whose answer's headers are any Mapping."""

    def __init__(self, status: int, headers: Mapping[str, object]) -> None:
        super().__init__(f"HTTP {status}")
        self.status_code = status
        self.response = type("Answer", (), {"status_code": status, "headers": headers})()


def _mapping_header_failures() -> list[Exception]:
    litellm_error = litellm.RateLimitError("slow down", llm_provider="openai", model="m")
    litellm_error.litellm_response_headers = MappingProxyType({"Retry-After": "47"})  # type: ignore[attr-defined]
    return [
        litellm_error,
        _MappingHeadersError(503, _OwnHeaders({"Retry-After": "47"})),
        _MappingHeadersError(429, _OwnHeaders({"Retry-After-Ms": "47000"})),
        # The same name twice, in two cases or repeated: the longest wait counts.
        _MappingHeadersError(429, {"Retry-After": "3", "retry-after": "47"}),
        _MappingHeadersError(429, {"retry-after": "47", "RETRY-AFTER": "3"}),
        _MappingHeadersError(429, {"Retry-After-Ms": "3000", "retry-after-ms": "47000"}),
        _MappingHeadersError(429, httpx.Headers([("Retry-After", "3"), ("Retry-After", "47")])),
        # An unreadable value does not hide a readable one.
        _MappingHeadersError(429, {"Retry-After": "soon", "retry-after": "47"}),
    ]


@pytest.mark.parametrize(
    "failure",
    _mapping_header_failures(),
    ids=[
        "proxy",
        "own",
        "own-ms",
        "two-cases",
        "two-cases-first-larger",
        "two-ms",
        "repeated",
        "unreadable",
    ],
)
def test_retry_advice_in_any_mapping_is_read_whatever_its_case(
    clock: Clock, monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    # answer_headers lowercased plain dicts only: a MappingProxyType or a Mapping of one's
    # own kept "Retry-After", and every layer lost the advice; a name held twice kept
    # whichever came last.
    assert retry_after(failure) == 47.0
    raised = iter([failure])

    def primary_answer(call: CompletionCall) -> object:
        raise next(raised)

    primary = FakeCompletion(primary_answer, model="a/primary")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    backup = FakeCompletion(lambda call: "b", model="b/backup")
    chat = with_fallbacks(primary, backup)
    chat(messages=MESSAGES)
    clock.now += 46.0
    with call_scope() as info:
        assert responses.text(chat(messages=MESSAGES)) == "b"
    assert info.route_skips == (("a/primary#0", "retry_after"),)
    assert len(primary.calls) == 1
    assert cool_for(failure, CooldownPolicy(failures=3)) == 47.0
    # with_retries waits as long as asked (its cap raised above 47 s).
    from fixedmodel.middleware import retries as retries_module

    slept: list[float] = []
    monkeypatch.setattr(retries_module, "_sync_sleep", slept.append)
    again = iter([failure])

    def flaky(call: CompletionCall) -> object:
        error = next(again, None)
        if error is not None:
            raise error
        return "retried"

    retried = with_retries(
        FakeCompletion(flaky, model="a/primary"),  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
        policy=RetryPolicy(max_retry_after=60.0),
    )
    assert responses.text(retried(messages=MESSAGES)) == "retried"
    assert slept == [47.0]


def test_a_failure_without_advice_does_not_skip(clock: Clock) -> None:
    primary = FakeCompletion([Fail(503), "again"], model="a/primary")
    backup = FakeCompletion(lambda call: "b", model="b/backup")
    chat = with_fallbacks(primary, backup)
    chat(messages=MESSAGES)
    assert responses.text(chat(messages=MESSAGES)) == "again"


def test_a_shorter_advice_does_not_shorten_a_longer_one(clock: Clock) -> None:
    primary = FakeCompletion([Fail(429, headers={"retry-after": "5"})], model="a/primary")
    middle = FakeCompletion(
        [Fail(429, headers={"retry-after": "60"}), Fail(429, headers={"retry-after": "1"})],
        model="b/middle",
    )
    last = FakeCompletion(lambda call: "c", model="c/last")
    chat = with_fallbacks(primary, middle, last)
    chat(messages=MESSAGES)  # primary: 5 s, middle: 60 s
    clock.now += 6
    primary.add(Fail(429, headers={"retry-after": "1"}))
    chat(messages=MESSAGES)  # primary fails again (1 s); middle still skipped
    assert len(middle.calls) == 1
    clock.now += 30
    primary.add(Fail(500))
    chat(messages=MESSAGES)
    assert len(middle.calls) == 1  # 36 s < 60 s


async def test_when_every_callable_is_skipped_a_rate_limit_names_the_soonest(
    clock: Clock,
) -> None:
    primary = FakeACompletion([Fail(429, headers={"retry-after": "30"})], model="a/one")
    backup = FakeACompletion([Fail(429, headers={"retry-after": "12"})], model="b/two")
    chat = with_fallbacks(primary, backup)
    with pytest.raises(litellm.RateLimitError):
        await chat(messages=MESSAGES)
    clock.now += 2
    with call_scope() as info, pytest.raises(litellm.RateLimitError) as raised:
        await chat(messages=MESSAGES)
    assert len(primary.calls) == 1
    assert len(backup.calls) == 1
    message = str(raised.value)
    assert "a/one#0" in message
    assert "b/two#1" in message
    from fixedmodel.middleware._errors import retry_after

    assert retry_after(raised.value) == pytest.approx(10.0, abs=0.01)
    assert info.route_skips == (("a/one#0", "retry_after"), ("b/two#1", "retry_after"))
    # An outer with_retries honours that advice, and the soonest callable answers then.
    clock.now += 10.01
    backup.add("b again")
    assert responses.text(await chat(messages=MESSAGES)) == "b again"


def test_max_retry_after_is_checked() -> None:
    with pytest.raises(ValueError, match="max_retry_after"):
        FallbackPolicy(max_retry_after=-1)


# 3. A callable appears once in a chain.


def test_a_repeated_callable_is_refused_at_construction() -> None:
    a = FakeCompletion(model="a/one")
    b = FakeCompletion(model="b/two")
    with pytest.raises(ValueError, match="'a/one' twice"):
        with_fallbacks(a, b, a)
    with pytest.raises(ValueError, match="'b/two' twice"):
        with_fallbacks(b, with_fallbacks(a, b))
    with pytest.raises(ValueError, match="'a/one' twice"):
        with_fallbacks(with_fallbacks(a, b), with_fallbacks(FakeCompletion(), a))
    with pytest.raises(ValueError, match="'a/one' twice"):
        with_fallbacks(with_retries(a), a)  # The same model under another layer.
    with pytest.raises(ValueError, match="'b/two' twice"):
        with_fallbacks(with_load_balancing([a, b]), b)
    with pytest.raises(ValueError, match="twice"):
        with_fallbacks(a, a)
    # Two callables bound to one model name are two deployments: accepted.
    with_fallbacks(a, FakeCompletion(model="a/one"))


# 4. A fallback whose context window cannot take the request is skipped.

# About 10,000 tokens for litellm's tokenizers (" hello" is one token).
LONG = [{"role": "user", "content": "hello " * 10_020}]


async def test_a_fallback_too_small_for_the_prompt_gets_no_request() -> None:
    primary = FakeACompletion([Fail(429)], model="gpt-4o")  # 128K
    small = FakeACompletion(lambda call: "small", model="gpt-4")  # 8K
    with call_scope() as info, pytest.raises(litellm.ContextWindowExceededError) as raised:
        await with_fallbacks(primary, small)(messages=LONG, max_tokens=500)
    assert small.calls == []
    assert isinstance(raised.value.__cause__, litellm.RateLimitError)
    assert "gpt-4#1" in str(raised.value)
    assert "8192" in str(raised.value)
    assert [type(c) for c in fallback_causes(raised.value)] == [
        litellm.RateLimitError,
        litellm.ContextWindowExceededError,
    ]
    assert info.route_skips == (("gpt-4#1", "context_window"),)
    assert info.route_failures == (("gpt-4o#0", "RateLimitError"),)


def test_a_larger_fallback_after_a_small_one_serves() -> None:
    primary = FakeCompletion([Fail(503)], model="gpt-4o")
    small = FakeCompletion(lambda call: "small", model="gpt-4")  # 8,192
    larger = FakeCompletion(lambda call: "larger", model="gpt-3.5-turbo")  # 16,385
    chat = with_fallbacks(primary, small, larger)
    with call_scope() as info:
        assert responses.text(chat(messages=LONG, max_tokens=500)) == "larger"
    assert small.calls == []
    assert info.route_skips == (("gpt-4#1", "context_window"),)
    # A short prompt fits the small model.
    primary.add(Fail(503))
    assert responses.text(chat(messages=MESSAGES, max_tokens=500)) == "small"


def test_max_tokens_counts_and_bound_defaults_are_read() -> None:
    # ~7,000 prompt tokens fit 8,192 alone, not with 2,000 tokens of answer.
    medium = [{"role": "user", "content": "hello " * 7_000}]
    primary = FakeCompletion([Fail(503), Fail(503)], model="gpt-4o")
    small = FakeCompletion(lambda call: "small", model="gpt-4")
    chat = with_fallbacks(primary, small)
    assert responses.text(chat(messages=medium)) == "small"
    with pytest.raises(litellm.ContextWindowExceededError):
        chat(messages=medium, max_tokens=2_000)
    assert len(small.calls) == 1
    # The same limit as a default of the fallback (what litellm will receive) counts too.
    limited = FakeCompletion(lambda call: "x", model="gpt-4", max_tokens=2_000)
    primary.add(Fail(503))
    with pytest.raises(litellm.ContextWindowExceededError):
        with_fallbacks(primary, limited)(messages=medium)
    assert limited.calls == []


def test_an_embedding_window_bounds_each_input_not_their_sum() -> None:
    # text-embedding-3-small takes 8,191 tokens per input and many inputs per request: ten
    # inputs of about 1,000 tokens fit, one input of about 9,000 does not.
    primary = FakeEmbedding([Fail(503), Fail(503)], model="openai/text-embedding-3-large")
    fallback = FakeEmbedding([[[0.5, 0.5]] * 10], model="openai/text-embedding-3-small")
    embed = with_fallbacks(primary, fallback)
    with call_scope() as info:
        answer = embed(input=["hello " * 1_000] * 10)
    assert len(answer.data) == 10
    assert len(fallback.calls) == 1
    assert info.route_skips == ()
    with pytest.raises(litellm.ContextWindowExceededError, match="8191 per input"):
        embed(input=["hi", "hello " * 9_000])
    assert len(fallback.calls) == 1


def test_a_prompt_whose_bytes_fit_is_not_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    # Counting tokens costs tens of microseconds on every failover; a text prompt's UTF-8
    # bytes bound its tokens, so a prompt that fits by bytes is let through uncounted.
    from fixedmodel.routing import _windows

    counted: list[object] = []
    real = _windows.estimate_tokens

    def counting(*args: Any, **kwargs: Any) -> int:
        counted.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(_windows, "estimate_tokens", counting)
    primary = FakeCompletion([Fail(503), Fail(503)], model="gpt-4o")
    small = FakeCompletion(lambda call: "small", model="gpt-4")  # 8,192
    chat = with_fallbacks(primary, small)
    assert responses.text(chat(messages=MESSAGES, max_tokens=500)) == "small"
    assert counted == []
    # Past the window by bytes, yet about 7,000 tokens: counted, and it fits.
    medium = [{"role": "user", "content": "hello " * 7_000}]
    assert responses.text(chat(messages=medium)) == "small"
    assert len(counted) == 1


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
async def test_a_primary_waiting_out_advice_and_a_fallback_too_small_give_the_advice(
    clock: Clock, asynchronous: bool
) -> None:
    # The primary asked for 47 s; the 8K fallback cannot take a 10K prompt. The error said
    # every callable asked to wait and "the first can be called again in -1000 s", with
    # retry-after-ms 1: a with_retries outside retried at once, for nothing.
    fake = FakeACompletion if asynchronous else FakeCompletion
    primary = fake([Fail(429, headers={"retry-after": "47"})], model="gpt-4o")
    small = fake(lambda call: "small", model="gpt-4")  # 8K
    chat: Any = with_fallbacks(primary, small)
    answer = await chat(messages=MESSAGES) if asynchronous else chat(messages=MESSAGES)
    assert responses.text(answer) == "small"
    clock.now += 7.0
    with call_scope() as info, pytest.raises(litellm.RateLimitError) as raised:
        if asynchronous:
            await chat(messages=LONG, max_tokens=500)
        else:
            chat(messages=LONG, max_tokens=500)
    assert retry_after(raised.value) == pytest.approx(40.0, abs=0.002)
    assert "again in 40.000 s" in str(raised.value)
    assert "8192" in str(raised.value)
    assert info.route_skips == (("gpt-4o#0", "retry_after"), ("gpt-4#1", "context_window"))
    assert (len(primary.calls), len(small.calls)) == (1, 1)


def test_an_unknown_model_is_never_skipped_for_context() -> None:
    primary = FakeCompletion([Fail(503)], model="gpt-4o")
    unknown = FakeCompletion(lambda call: "ok", model="custom/unmapped-model")
    assert responses.text(with_fallbacks(primary, unknown)(messages=LONG)) == "ok"


# 5. Fallback-worthy by status code as well as class, the same in every layer.


def _api_error(status: int) -> Exception:
    return litellm.APIError(
        status_code=status, message=f"HTTP {status}", llm_provider="openai", model="m"
    )


class StatusError(Exception):
    """An exception from a hand-written callable that carries an HTTP status."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status_code = status


class TextStatusError(Exception):
    """A hand-written callable's exception whose status is a string, as some SDKs keep it."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status_code = str(status)


def _httpx_error(status: int) -> Exception:
    """What ``httpx.Response.raise_for_status()`` raises: the status is on its response."""
    request = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    return httpx.HTTPStatusError(
        f"HTTP {status}", request=request, response=httpx.Response(status, request=request)
    )


def _aiohttp_error(status: int, headers: dict[str, str] | None = None) -> Exception:
    """What aiohttp's ``raise_for_status()`` raises: the status in ``status``, not
    ``status_code``, and the answer's headers in ``headers``."""
    import aiohttp
    from multidict import CIMultiDict, CIMultiDictProxy
    from yarl import URL

    url = URL("http://127.0.0.1:9/v1/chat/completions")
    info = aiohttp.RequestInfo(url, "POST", CIMultiDictProxy(CIMultiDict()), url)
    return aiohttp.ClientResponseError(
        info, (), status=status, message="", headers=CIMultiDict(headers or {})
    )


def _urllib_error(status: int, headers: dict[str, str] | None = None) -> Exception:
    """What the standard library's ``urllib.request.urlopen`` raises: the status in
    ``code``/``status``, the headers in an ``email.message.Message`` (not a Mapping)."""
    import email.message
    import io
    import urllib.error

    message = email.message.Message()
    for name, value in (headers or {}).items():
        message[name] = value
    url = "http://127.0.0.1:9/v1/chat/completions"
    return urllib.error.HTTPError(url, status, "", message, io.BytesIO(b""))


STATUS_CARRIERS = [
    _api_error,
    StatusError,
    TextStatusError,
    _httpx_error,
    _aiohttp_error,
    _urllib_error,
]


@pytest.mark.parametrize("make", STATUS_CARRIERS)
@pytest.mark.parametrize("status", [401, 403, 404, 408, 409, 429, 500, 502, 503, 529, 501])
def test_status_codes_fall_back_whatever_the_class(make: type[Exception], status: int) -> None:
    error = make(status)
    assert is_fallback_worthy(error)
    primary = FakeCompletion([error], model="a/one")
    backup = FakeCompletion(lambda call: "backup", model="b/two")
    assert responses.text(with_fallbacks(primary, backup)(messages=MESSAGES)) == "backup"
    assert len(backup.calls) == 1


@pytest.mark.parametrize("make", STATUS_CARRIERS)
@pytest.mark.parametrize("status", [400, 422])
def test_bad_request_statuses_do_not_fall_back_whatever_the_class(
    make: type[Exception], status: int
) -> None:
    error = make(status)
    assert not is_fallback_worthy(error)
    assert not counts_against(error)
    backup = FakeCompletion(lambda call: "backup", model="b/two")
    with pytest.raises(type(error)):
        with_fallbacks(FakeCompletion([error], model="a/one"), backup)(messages=MESSAGES)
    assert backup.calls == []


@pytest.mark.parametrize("make", STATUS_CARRIERS)
def test_denied_and_not_found_follow_the_authentication_flag(make: type[Exception]) -> None:
    from fixedmodel.middleware._errors import is_denied, is_not_found

    off = FallbackPolicy(authentication=False)
    for status in (401, 403, 404):
        assert not is_fallback_worthy(make(status), off)
    assert is_denied(make(403))
    assert is_denied(make(401))
    assert is_not_found(make(404))
    assert not is_denied(make(404))


def _transport_failures() -> list[BaseException]:
    import socket
    import ssl
    import urllib.error

    import aiohttp
    import openai
    from urllib3 import exceptions as urllib3_errors

    request = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    return [
        httpx.ConnectError("refused", request=request),
        httpx.ReadTimeout("timed out", request=request),
        httpx.RemoteProtocolError("peer closed connection", request=request),
        TimeoutError("timed out"),
        ConnectionResetError(104, "Connection reset by peer"),
        openai.APITimeoutError(request=request),
        openai.APIConnectionError(request=request),
        aiohttp.ServerDisconnectedError(),
        # The standard library's: a name that does not resolve, a TLS session cut short,
        # urllib's URLError over a refused connection or a timeout.
        socket.gaierror(-2, "Name or service not known"),
        ssl.SSLEOFError(8, "EOF occurred in violation of protocol"),
        urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")),
        urllib.error.URLError(TimeoutError("timed out")),
        # urllib3's own classes (a hand-written callable on urllib3.PoolManager): none is
        # a requests or builtin timeout or connection error.
        urllib3_errors.ReadTimeoutError(None, "http://127.0.0.1:9", "Read timed out."),  # type: ignore[arg-type]
        urllib3_errors.NewConnectionError(None, "Connection refused"),  # type: ignore[arg-type]
        urllib3_errors.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")),
        urllib3_errors.MaxRetryError(
            None,  # type: ignore[arg-type]
            "/v1/chat/completions",
            urllib3_errors.NewConnectionError(None, "Connection refused"),  # type: ignore[arg-type]
        ),
    ]


@pytest.mark.parametrize("failure", _transport_failures(), ids=lambda e: type(e).__name__)
def test_a_hand_written_callables_timeout_or_dropped_connection_is_a_route_failure(
    failure: BaseException,
) -> None:
    # litellm raises Timeout or APIConnectionError for these, and every layer takes them up;
    # raised as they are by a hand-written callable (httpx, the openai SDK, aiohttp), they
    # were neither retried, nor fallen back on, nor counted against a deployment.
    from fixedmodel.middleware._errors import is_retryable

    assert is_retryable(failure)
    assert is_fallback_worthy(failure)
    assert counts_against(failure)
    primary = FakeCompletion([failure], model="a/one")  # type: ignore[list-item]
    backup = FakeCompletion(lambda call: "backup", model="b/two")
    assert responses.text(with_fallbacks(primary, backup)(messages=MESSAGES)) == "backup"
    retried = FakeCompletion([failure, "again"], model="a/one")  # type: ignore[list-item]
    policy = RetryPolicy(max_attempts=2, initial_wait=0.0, jitter=0.0)
    assert responses.text(with_retries(retried, policy)(messages=MESSAGES)) == "again"
    # A local failure stays what it was: not retried, not fallen back on.
    assert not is_fallback_worthy(FileNotFoundError("prompt.txt"))
    import urllib.error

    assert not is_fallback_worthy(urllib.error.URLError("unknown url type: htp"))


def test_a_urllib_answers_retry_after_is_read() -> None:
    error = _urllib_error(429, {"Retry-After": "12"})
    assert retry_after(error) == 12.0
    assert cool_for(error, CooldownPolicy()) == 12.0


def test_an_aiohttp_answers_retry_after_is_read() -> None:
    error = _aiohttp_error(429, {"Retry-After": "12"})
    assert retry_after(error) == 12.0
    assert cool_for(error, CooldownPolicy()) == 12.0


def test_a_status_is_read_from_an_int_a_numeric_string_or_the_response() -> None:
    from fixedmodel.middleware._errors import status_of

    assert status_of(TextStatusError(503)) == 503
    assert status_of(_httpx_error(429)) == 429
    odd = StatusError(503)
    for value in ("n/a", "", "5e2", 999, 42, True, None, 503.0):
        odd.status_code = value  # type: ignore[assignment]
        assert status_of(odd) is None, value


def test_one_rule_for_load_balancing_and_fallbacks() -> None:
    from fixedmodel.middleware._errors import is_route_failure

    for status in (401, 403, 408, 409, 429, 500, 503, 501):
        assert counts_against(_api_error(status)), status
        assert is_route_failure(StatusError(status)), status
        assert is_route_failure(TextStatusError(status)), status
        assert is_route_failure(_httpx_error(status)), status
    for status in (400, 404, 422):
        assert not counts_against(_api_error(status)), status
    quota = Fail(429, code="insufficient_quota").exception("m")
    assert counts_against(quota)  # Another deployment has its own account.
    assert is_fallback_worthy(quota)


def test_a_load_balanced_403_deployment_cools_down_and_the_healthy_one_serves() -> None:
    denied = FakeCompletion(lambda call: _api_error(403), model="a/denied")
    healthy = FakeCompletion(lambda call: "ok", model="b/healthy")
    chat = with_load_balancing(
        [denied, healthy], cooldown=CooldownPolicy(failures=1, cooldown=60.0)
    )
    answers = [responses.text(chat(messages=MESSAGES)) for _ in range(6)]
    assert answers == ["ok"] * 6
    assert len(denied.calls) <= 1
    assert len(healthy.calls) == 6


# 6. The chain flag: True inside every callable but the last.


def _recording(seen: list[bool], model: str, *replies: object) -> FakeCompletion:
    """A fake that records the chain flag at each call; its last reply repeats."""
    left = list(replies)

    def respond(call: CompletionCall) -> object:
        seen.append(bool(has_next_in_chain.get()))
        return left.pop(0) if len(left) > 1 else left[0]

    return FakeCompletion(respond, model=model)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def test_the_chain_flag_is_set_for_all_but_the_last_callable() -> None:
    seen: list[bool] = []
    chat = with_fallbacks(
        _recording(seen, "a/one", Fail(503)),
        _recording(seen, "b/two", Fail(503)),
        _recording(seen, "c/three", "ok"),
    )
    assert responses.text(chat(messages=MESSAGES)) == "ok"
    assert seen == [True, True, False]
    assert has_next_in_chain.get() is False  # Reset after the call.
    seen.clear()
    stream = chat(messages=MESSAGES, stream=True)
    assert "".join(responses.text_deltas(stream)) == "ok"
    assert seen == [True, True, False]


async def test_the_chain_flag_in_async_calls_and_nested_chains() -> None:
    seen: list[bool] = []

    def recording(model: str, reply: object) -> FakeACompletion:
        def respond(call: CompletionCall) -> object:
            seen.append(bool(has_next_in_chain.get()))
            return reply

        return FakeACompletion(respond, model=model)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]

    inner = with_fallbacks(recording("a/one", Fail(503)), recording("b/two", Fail(503)))
    chat = with_fallbacks(inner, recording("c/three", "ok"))
    assert responses.text(await chat(messages=MESSAGES)) == "ok"
    # The inner chain's last callable still has the outer chain's next one after it.
    assert seen == [True, True, False]
    assert has_next_in_chain.get() is False


def test_the_chain_flag_is_false_when_every_later_callable_is_skipped(clock: Clock) -> None:
    seen: list[bool] = []
    first = _recording(seen, "a/one", Fail(503), "ok")
    later = FakeCompletion([Fail(429, headers={"retry-after": "30"})], model="b/two")
    chat = with_fallbacks(first, later)
    with pytest.raises(litellm.RateLimitError):
        chat(messages=MESSAGES)
    seen.clear()
    # b/two is skipped for 30 s: a/one is the last callable that can answer.
    assert responses.text(chat(messages=MESSAGES)) == "ok"
    assert seen == [False]


# 7. The first chunk with content, not the role-only opener, is the boundary.


def _chunk(**delta: object) -> object:
    from litellm.types.utils import Delta, ModelResponseStream, StreamingChoices

    return ModelResponseStream(choices=[StreamingChoices(delta=Delta(**delta))])


class _Stream:
    """A stand-in stream: yields its items, raising the exceptions among them."""

    def __init__(self, items: list[object]) -> None:
        self.items = list(items)
        self.closed = False

    def __iter__(self) -> _Stream:
        return self

    def __next__(self) -> object:
        if not self.items:
            raise StopIteration
        item = self.items.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    def __aiter__(self) -> _Stream:
        return self

    async def __anext__(self) -> object:
        try:
            return self.__next__()
        except StopIteration:
            raise StopAsyncIteration from None

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


def test_what_counts_as_content() -> None:
    from litellm.types.utils import ChatCompletionDeltaToolCall, Function

    from fixedmodel.routing._first_chunk import carries_content

    assert not carries_content(_chunk(role="assistant", content=""))
    assert not carries_content(_chunk(role="assistant"))
    assert not carries_content(_chunk())  # the stop chunk
    assert carries_content(_chunk(content="Hi"))
    assert carries_content(_chunk(reasoning_content="thinking"))
    call = ChatCompletionDeltaToolCall(
        id="c1", type="function", index=0, function=Function(name="f", arguments="{}")
    )
    assert carries_content(_chunk(role="assistant", tool_calls=[call]))
    from litellm.types.utils import ModelResponseStream

    assert not carries_content(ModelResponseStream(choices=[]))  # usage only
    assert carries_content(object())  # an unknown shape is not held back


def test_chunks_before_content_are_held_in_order_and_a_failure_after_them_raises() -> None:
    from fixedmodel.routing._first_chunk import first_chunk

    role, usage, text, more = (
        _chunk(role="assistant", content=""),
        _chunk(),
        _chunk(content="Hi"),
        _chunk(content=" there"),
    )
    stream = _Stream([role, usage, text, more])
    first_chunk(stream)
    assert stream.items == [more]  # read up to the first content, no further
    assert list(stream) == [role, usage, text, more]

    failing = _Stream([role, litellm.Timeout(message="stall", model="m", llm_provider="x")])
    with pytest.raises(litellm.Timeout):
        first_chunk(failing)
    assert failing.closed

    ended = _Stream([role])
    first_chunk(ended)
    assert list(ended) == [role]


async def test_async_chunks_before_content_are_held_in_order() -> None:
    from fixedmodel.routing._first_chunk import afirst_chunk

    role, text = _chunk(role="assistant", content=""), _chunk(content="Hi")
    stream = _Stream([role, text])
    await afirst_chunk(stream)
    assert [chunk async for chunk in stream] == [role, text]
    failing = _Stream(
        [role, litellm.APIConnectionError(message="cut", model="m", llm_provider="x")]
    )
    with pytest.raises(litellm.APIConnectionError):
        await afirst_chunk(failing)
    assert failing.closed


class _StallingStream(_Stream):
    """Gives its items, then waits for ever for the next chunk (a stalled provider)."""

    async def __anext__(self) -> object:
        if self.items:
            return await super().__anext__()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_read_ahead_cancelled_mid_way_closes_the_stream() -> None:
    # A timeout around a chain whose primary streams a role-only chunk, then stalls: the
    # call is cancelled while the chain reads ahead, and nobody will read that stream.
    from fixedmodel.routing._first_chunk import afirst_chunk

    stream = _StallingStream([_chunk(role="assistant", content="")])
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(afirst_chunk(stream), timeout=0.05)
    assert stream.closed


def test_a_read_ahead_interrupted_closes_the_stream() -> None:
    from fixedmodel.routing._first_chunk import first_chunk

    stream = _Stream([_chunk(role="assistant", content=""), KeyboardInterrupt()])
    with pytest.raises(KeyboardInterrupt):
        first_chunk(stream)
    assert stream.closed


# --- text with no UTF-8 form ---------------------------------------------------------------

# Half of an emoji, as json.loads('"\ud83d"') or errors="surrogateescape" decoding gives it.
LONE_SURROGATE = "truncated emoji: \ud83d"


@pytest.mark.parametrize(
    "where",
    ["content", "name", "second message"],
)
def test_a_prompt_holding_a_lone_surrogate_still_reaches_the_fallback(where: str) -> None:
    messages: list[dict[str, str]] = [{"role": "user", "content": "hello"}]
    if where == "content":
        messages[0]["content"] = LONE_SURROGATE
    elif where == "name":
        messages[0]["name"] = LONE_SURROGATE
    else:
        messages.append({"role": "user", "content": LONE_SURROGATE})
    primary = FakeCompletion([Fail(503)], model="openai/gpt-4o-mini")
    backup = FakeCompletion(["from backup"], model="openai/gpt-4o")  # a window litellm knows
    answer = with_fallbacks(primary, backup)(messages=messages)  # type: ignore[arg-type]
    assert responses.text(answer) == "from backup"


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
async def test_a_balancer_waits_when_the_next_callable_cannot_take_the_prompt(
    monkeypatch: pytest.MonkeyPatch, asynchronous: bool
) -> None:
    # The balancer's only deployment cools for 4 s and its policy waits up to 30 s; the
    # fallback is an 8K model and the prompt has 10K tokens. The chain flag said "a next
    # callable can answer now", so the balancer handed over at once, the chain skipped the
    # fallback for its window and raised ContextWindowExceededError: a request the primary
    # could serve 4 s later failed, with an error no retry takes up.
    from fixedmodel.routing import load_balancing as lb_module
    from fixedmodel.stores.cooldown_memory import MemoryCooldownStore

    store_clock = Clock()
    store = MemoryCooldownStore(clock=store_clock)
    policy = CooldownPolicy(failures=1, cooldown=4.0, when_all_cooling="wait", max_wait=30.0)
    store.failed("default:a", policy, probe=False, cool_for=4.0)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        store_clock.now += 5.0  # Past the 4 s cooldown.

    async def asleep(seconds: float) -> None:
        sleep(seconds)

    monkeypatch.setattr(lb_module, "_sync_sleep", sleep)
    monkeypatch.setattr(lb_module, "_async_sleep", asleep)
    monkeypatch.setattr(lb_module, "_REMEMBER_REFUSAL", 0.0)
    fake = FakeACompletion if asynchronous else FakeCompletion
    primary = fake(lambda call: "from the balancer", model="gpt-4o")  # 128K
    small = fake(lambda call: "small", model="gpt-4")  # 8K
    chat: Any = with_fallbacks(
        with_load_balancing({"a": primary}, cooldown=policy, store=store), small
    )
    with call_scope() as info:
        answer = chat(messages=LONG, max_tokens=500)
        answer = await answer if asynchronous else answer
    assert responses.text(answer) == "from the balancer"
    assert len(slept) == 1
    assert small.calls == []
    assert info.route_failures == ()
    # A prompt the fallback takes: the balancer hands over at once, as before.
    store.failed("default:a", policy, probe=False, cool_for=4.0)
    answer = chat(messages=MESSAGES)
    assert responses.text(await answer if asynchronous else answer) == "small"
    assert len(slept) == 1


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
async def test_a_waiting_balancer_hands_over_once_a_fallbacks_advice_runs_out(
    monkeypatch: pytest.MonkeyPatch, clock: Clock, asynchronous: bool
) -> None:
    # The balancer's only deployment cools for 10 s and its policy waits up to 30 s; the
    # fallback asked for 2 s. The chain flag was worked out at the time the chain's call
    # began: 3 s into the wait the fallback could answer, but the balancer still read "no
    # callable follows" and waited the whole 10 s.
    from fixedmodel.routing import load_balancing as lb_module
    from fixedmodel.stores.cooldown_memory import MemoryCooldownStore

    store_clock = Clock()
    store = MemoryCooldownStore(clock=store_clock)
    policy = CooldownPolicy(failures=1, cooldown=10.0, when_all_cooling="wait", max_wait=30.0)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        store_clock.now += 3.0  # Woken early: a probe elsewhere may have ended.
        clock.now += 3.0

    async def asleep(seconds: float) -> None:
        sleep(seconds)

    monkeypatch.setattr(lb_module, "_sync_sleep", sleep)
    monkeypatch.setattr(lb_module, "_async_sleep", asleep)
    monkeypatch.setattr(lb_module, "_REMEMBER_REFUSAL", 0.0)
    fake = FakeACompletion if asynchronous else FakeCompletion
    primary = fake([Fail(503), "from the balancer"], model="a/primary")
    backup = fake([Fail(429, headers={"retry-after": "2"}), "from the backup"], model="b/backup")
    chat: Any = with_fallbacks(
        with_load_balancing({"a": primary}, cooldown=policy, store=store), backup
    )
    with pytest.raises(litellm.RateLimitError):  # The deployment cools 10 s, backup 2 s.
        answer = chat(messages=MESSAGES)
        await answer if asynchronous else answer
    with call_scope() as info:
        answer = chat(messages=MESSAGES)
        answer = await answer if asynchronous else answer
    assert responses.text(answer) == "from the backup"
    assert len(slept) == 1  # Handed over after the first wake-up, 3 s in.
    assert len(primary.calls) == 1
    assert info.served_by == "b/backup#1"


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
async def test_a_fallback_whose_advice_ran_out_during_a_slow_failure_is_tried(
    clock: Clock, asynchronous: bool
) -> None:
    # The backup asked for 2 s; the primary then took 5 s to fail. The chain compared the
    # backup's advice with the time its call began, skipped the backup and raised the
    # primary's 503, though the backup could answer.
    answers = iter([Fail(503), "slow"])

    def slow_primary(call: CompletionCall) -> object:
        answer = next(answers)
        if answer == "slow":
            clock.now += 5.0
            return Fail(503)
        return answer

    fake = FakeACompletion if asynchronous else FakeCompletion
    primary = fake(slow_primary, model="a/primary")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    backup = fake([Fail(429, headers={"retry-after": "2"}), "from the backup"], model="b/backup")
    chat: Any = with_fallbacks(primary, backup)
    with pytest.raises(litellm.RateLimitError):
        answer = chat(messages=MESSAGES)
        await answer if asynchronous else answer
    with call_scope() as info:
        answer = chat(messages=MESSAGES)
        answer = await answer if asynchronous else answer
    assert responses.text(answer) == "from the backup"
    assert info.route_skips == ()
    assert info.fallbacks_tried == 1


# 7. The chain flag outlives the chain's call in the contexts copied during it.


class _Marker:
    """A keyword value whose life a weak reference tells."""


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
async def test_a_context_copied_during_the_call_holds_no_live_flag_nor_the_request(
    asynchronous: bool,
) -> None:
    # litellm's logging worker, a task a callable starts, run_in_executor: each keeps the
    # context of the call that started it (and so the chain flag) for as long as it lives.
    copied: list[contextvars.Context] = []

    def respond(call: CompletionCall) -> object:
        copied.append(contextvars.copy_context())
        return "ok"

    fake = FakeACompletion if asynchronous else FakeCompletion
    first = fake(respond, model="a/one")  # type: ignore[arg-type]
    chat: Any = with_fallbacks(first, fake(["later"], model="b/two"))
    marker = _Marker()
    alive = weakref.ref(marker)
    answer = chat(messages=MESSAGES, metadata={"marker": marker})
    answer = await answer if asynchronous else answer
    assert responses.text(answer) == "ok"
    first.calls.clear()  # The fake's own record of the request.
    del marker, answer
    gc.collect()
    flag = copied[0].run(has_next_in_chain.get)
    # The chain's call is over: nothing of it follows, whoever reads the flag now.
    assert not flag
    # And the request (a whole conversation, images) is not kept for the copy's lifetime.
    assert alive() is None
