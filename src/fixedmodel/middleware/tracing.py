"""OpenTelemetry traces and metrics for all four callable kinds, by the GenAI conventions.

``with_tracing`` makes one CLIENT span per call and records the GenAI client metrics, with
the names and attributes of the OpenTelemetry semantic conventions for generative AI,
v1.41.0 (status "Development"; since May 2026 maintained in the
open-telemetry/semantic-conventions-genai repository):

- span ``{gen_ai.operation.name} {gen_ai.request.model}``, kind CLIENT, with
  ``gen_ai.operation.name`` (``chat`` or ``embeddings``), ``gen_ai.provider.name``,
  ``gen_ai.request.*`` (model, max_tokens, temperature, top_p, top_k, seed,
  frequency_penalty, presence_penalty, stop_sequences, choice.count, encoding_formats),
  ``gen_ai.embeddings.dimension.count``, ``gen_ai.output.type``, ``server.address`` and
  ``server.port``; from the answer ``gen_ai.response.{id,model,finish_reasons}``,
  ``gen_ai.usage.{input_tokens,output_tokens}`` and, for streams,
  ``gen_ai.response.time_to_first_chunk``; on failure ``error.type`` and an ERROR status;
- metrics ``gen_ai.client.operation.duration`` (s), ``gen_ai.client.token.usage``
  ({token}, with ``gen_ai.token.type``) and, for streams,
  ``gen_ai.client.operation.time_to_first_chunk`` (s).

What the other layers found is added as ``fixedmodel.attempts``, ``fixedmodel.cache_hit``
and ``fixedmodel.rate_limit.wait`` (s). Message content is recorded only with
``capture_content=True``, as ``gen_ai.input.messages`` and ``gen_ai.output.messages`` (JSON),
with any credential value of the request replaced by ``[REDACTED]``; credentials themselves
are never recorded.

Below it, each attempt of ``with_fallbacks`` (a callable of the chain),
``with_load_balancing`` (a deployment) and ``with_retries`` (a request) is a child span named
``{gen_ai.operation.name} {gen_ai.request.model}`` after the callable attempted, with
``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.model``,
``fixedmodel.attempt.kind`` (``fallback``, ``deployment``, ``retry``),
``fixedmodel.attempt.name`` (the routed name) or ``fixedmodel.attempt.number`` (retries,
from 1), and on failure ``error.type``, an ERROR status and an ``exception`` event. An
attempt's span is current while it runs, so nested layers' attempts nest. A call answered
by another model than the one asked has its span renamed after the model that answered
(``gen_ai.request.model`` keeps the one asked). A streamed attempt's span ends when the stream
is returned, or at its first chunk when a routing layer still had somewhere to go.

A stream's span ends when the stream ends: read to its end, failed, closed early, or
garbage-collected unread.

Without ``tracer_provider=``/``meter_provider=``, each call first checks whether an SDK has
set the global providers; while neither is set (the API's proxies), the call goes straight to
the layer below, building nothing. An error of the call or of its stream is also recorded as
the span's ``exception`` event, as the API's ``use_span`` would.

Needs the ``otel`` extra (``pip install 'fixedmodel[otel]'``, the OpenTelemetry API only);
without it ``import fixedmodel`` and every other layer work as before, and only
``with_tracing`` raises.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from fixedmodel._faults import observer_fault
from fixedmodel._pickling import refuse_pickling
from fixedmodel._secrets import is_secret
from fixedmodel._streams import StreamEnd, watch_stream
from fixedmodel.middleware._attempts import (
    AttemptKind,
    AttemptObserver,
    observing,
    stop_observing,
)
from fixedmodel.middleware._call import (
    CallInfo,
    ModelCallable,
    Wrapper,
    check_callable,
    is_async_callable,
    is_stream_request,
    join_call,
    leave_call,
    request_kind,
    request_reader,
    requests_made,
)
from fixedmodel.middleware._errors import status_of

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.metrics import Histogram, MeterProvider
    from opentelemetry.trace import Span, Tracer, TracerProvider

    from fixedmodel._protocols import ModelFn

__all__ = ["with_tracing"]

SCHEMA_URL = "https://opentelemetry.io/schemas/1.41.0"

# gen_ai.provider.name well-known values for litellm's provider prefixes (conventions v1.41.0);
# any other provider is named by its litellm prefix.
_PROVIDER_NAMES = {
    "openai": "openai",
    "text-completion-openai": "openai",
    "azure": "azure.ai.openai",
    "azure_text": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "anthropic": "anthropic",
    "bedrock": "aws.bedrock",
    "sagemaker": "aws.sagemaker",
    "vertex_ai": "gcp.vertex_ai",
    "vertex_ai_beta": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "cohere": "cohere",
    "cohere_chat": "cohere",
    "mistral": "mistral_ai",
    "groq": "groq",
    "deepseek": "deepseek",
    "xai": "x_ai",
    "perplexity": "perplexity",
    "watsonx": "ibm.watsonx.ai",
}

# Request keywords copied to span attributes, by attribute name.
_REQUEST_ATTRIBUTES = {
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "seed": "gen_ai.request.seed",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "dimensions": "gen_ai.embeddings.dimension.count",
}

# Advised bucket boundaries of the two histograms (conventions v1.41.0).
_DURATION_BUCKETS = tuple(0.01 * 2**power for power in range(14))  # 0.01 s to 81.92 s
_TOKEN_BUCKETS = tuple(float(4**power) for power in range(14))

_REDACTED = "[REDACTED]"


def _otel() -> tuple[Any, Any]:
    """The OpenTelemetry API's ``trace`` and ``metrics`` modules (Any: imported lazily)."""
    try:
        from opentelemetry import metrics, trace
    except ImportError as exc:
        msg = "with_tracing() needs the OpenTelemetry API: pip install 'fixedmodel[otel]'"
        raise ImportError(msg) from exc
    return trace, metrics


@lru_cache(maxsize=256)
def provider_name(model: str | None) -> str:
    """The ``gen_ai.provider.name`` of a litellm model name (its provider prefix)."""
    if model is None:
        return "unknown"
    prefix = model.split("/", 1)[0] if "/" in model else "openai"
    return _PROVIDER_NAMES.get(prefix, prefix)


def _server(request: Mapping[str, object]) -> Mapping[str, Any]:
    base: object = request.get("api_base") or request.get("base_url")
    if not isinstance(base, str):
        return {}
    return _server_of(base)


@lru_cache(maxsize=256)  # a process talks to few servers; parsing a URL per call adds up
def _server_of(base: str) -> Mapping[str, Any]:
    try:
        parts = urlsplit(base)
        port = parts.port
    except ValueError:
        return {}
    found: dict[str, Any] = {}
    if parts.hostname:
        found["server.address"] = parts.hostname
        if port is not None:
            found["server.port"] = port
    return found


def _output_type(request: Mapping[str, object]) -> str | None:
    response_format = request.get("response_format")
    if response_format is None:
        return None
    if isinstance(response_format, Mapping):
        kind = _field(cast("object", response_format), "type")
        return "json" if kind in ("json_object", "json_schema") else "text"
    return "json"  # a pydantic model class


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def request_attributes(
    model: str | None, kind: str, request: Mapping[str, object]
) -> dict[str, Any]:
    """The span attributes known before the call (no content, no credential)."""
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat" if kind == "completion" else "embeddings",
        "gen_ai.provider.name": provider_name(model),
    }
    if model is not None:
        attributes["gen_ai.request.model"] = model
    for name, attribute in _REQUEST_ATTRIBUTES.items():
        value = request.get(name)
        if _number(value):
            attributes[attribute] = value
    max_tokens = request.get("max_completion_tokens", request.get("max_tokens"))
    if _number(max_tokens):
        attributes["gen_ai.request.max_tokens"] = max_tokens
    n = request.get("n")
    if _number(n) and n != 1:
        attributes["gen_ai.request.choice.count"] = n
    stop = request.get("stop")
    if isinstance(stop, str):
        attributes["gen_ai.request.stop_sequences"] = (stop,)
    elif isinstance(stop, Sequence):
        items: Sequence[object] = stop  # pyright: ignore[reportUnknownVariableType]
        attributes["gen_ai.request.stop_sequences"] = tuple(str(item) for item in items)
    encoding = request.get("encoding_format")
    if isinstance(encoding, str):
        attributes["gen_ai.request.encoding_formats"] = (encoding,)
    output = _output_type(request)
    if output is not None:
        attributes["gen_ai.output.type"] = output
    attributes.update(_server(request))
    return attributes


def _field(item: object, name: str) -> object:
    if isinstance(item, (dict, Mapping)):  # dict first: checked without the ABC machinery
        return cast("Mapping[object, object]", item).get(name)
    return getattr(item, name, None)


def _items(value: object) -> list[object] | None:
    """The items of a list-like value (not a str), or None."""
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return list(cast("Sequence[object]", value))
    return None


def response_attributes(result: object, operation: str = "chat") -> dict[str, Any]:
    """The span attributes a ``ModelResponse``/``EmbeddingResponse`` carries.

    ``operation`` is the span's ``gen_ai.operation.name`` (``"chat"`` or ``"embeddings"``):
    an embedding has no choices, and its usage no output tokens.
    """
    attributes: dict[str, Any] = {}
    response_id = _field(result, "id")
    if isinstance(response_id, str) and response_id:
        attributes["gen_ai.response.id"] = response_id
    response_model = _field(result, "model")
    if isinstance(response_model, str) and response_model:
        attributes["gen_ai.response.model"] = response_model
    chat = operation == "chat"
    choices = _field(result, "choices") if chat else None
    if isinstance(choices, (list, tuple)):
        listed = cast("Sequence[object]", choices)
        reasons = [_field(choice, "finish_reason") for choice in listed]
        attributes["gen_ai.response.finish_reasons"] = tuple(
            reason for reason in reasons if isinstance(reason, str)
        )
    usage = _field(result, "usage")
    if usage is not None:
        prompt = _field(usage, "prompt_tokens")
        if isinstance(prompt, int):
            attributes["gen_ai.usage.input_tokens"] = prompt
        if chat:
            completion = _field(usage, "completion_tokens")
            if isinstance(completion, int):
                attributes["gen_ai.usage.output_tokens"] = completion
    return attributes


# Credential values shorter than this are not searched for in content: a real key or token
# is far longer, and a short placeholder (``api_key="unused"`` for a local server) would
# otherwise blank out ordinary words of the prompts and answers.
_SHORTEST_SECRET = 12


def _secret_values(request: Mapping[str, object]) -> list[str]:
    """The credential values of ``request`` worth searching for in content, longest first."""
    found: list[str] = []

    def add(value: object) -> None:
        if isinstance(value, str):
            found.append(value)
            # "Bearer <token>", "Basic <...>": the token alone may appear elsewhere.
            scheme, _, token = value.partition(" ")
            if token and scheme.isalpha():
                found.append(token.strip())

    for name, value in request.items():
        if is_secret(name):
            add(value)
        elif name in ("extra_headers", "headers") and isinstance(value, Mapping):
            headers = cast("Mapping[object, object]", value)
            for key, item in headers.items():
                if isinstance(key, str) and is_secret(key):
                    add(item)
    kept = {value for value in found if len(value) >= _SHORTEST_SECRET}
    return sorted(kept, key=len, reverse=True)


def _redacted(value: object, secrets: list[str]) -> object:
    """``value`` with every credential replaced in its strings (structure kept)."""
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, _REDACTED)
        return value
    if isinstance(value, dict):
        items = cast("dict[str, object]", value)
        return {key: _redacted(item, secrets) for key, item in items.items()}
    if isinstance(value, list):
        return [_redacted(item, secrets) for item in cast("list[object]", value)]
    return value


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _parts(content: object) -> list[dict[str, object]]:
    """Message content as the conventions' parts: text, or the part's type."""
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: list[dict[str, object]] = []
    for part in _items(content) or ():
        if isinstance(part, str):  # an embedding input's texts
            parts.append({"type": "text", "content": part})
            continue
        text = _field(part, "text")
        if isinstance(text, str):
            parts.append({"type": "text", "content": text})
        else:
            parts.append({"type": str(_field(part, "type") or "unknown")})
    return parts


def _tool_calls(message: object) -> list[dict[str, object]]:
    calls: list[dict[str, object]] = []
    for call in _items(_field(message, "tool_calls")) or ():
        function = _field(call, "function")
        calls.append(
            {
                "type": "tool_call",
                "id": _field(call, "id"),
                "name": _field(function, "name"),
                "arguments": _field(function, "arguments"),
            }
        )
    return calls


def _input_message(message: object) -> dict[str, object]:
    role = str(_field(message, "role"))
    content = _field(message, "content")
    if role == "tool":
        # A tool's answer to a call the model made.
        part: dict[str, object] = {
            "type": "tool_call_response",
            "id": _field(message, "tool_call_id"),
            "response": _text(content),
        }
        return {"role": role, "parts": [part]}
    return {"role": role, "parts": _parts(content) + _tool_calls(message)}


def _as_json(rendered: object, request: Mapping[str, object]) -> str:
    return json.dumps(_redacted(rendered, _secret_values(request)), default=str)


def input_messages(request: Mapping[str, object]) -> str | None:
    """``gen_ai.input.messages``: the request's messages (or embedding input) as JSON.

    Text parts, the tool calls of assistant messages and tool results, as the conventions'
    parts (v1.41.0); other parts (images, audio, files) by type only.
    """
    messages = _items(request.get("messages"))
    if messages is not None:
        rendered = [_input_message(message) for message in messages]
    elif "input" in request:
        rendered = [{"role": "user", "parts": _parts(request.get("input"))}]
    else:
        return None
    return _as_json(rendered, request)


def output_messages(result: object, request: Mapping[str, object]) -> str | None:
    """``gen_ai.output.messages``: the answer's choices as JSON (None for embeddings)."""
    choices = _items(_field(result, "choices"))
    if choices is None:
        return None
    rendered = [
        {
            "role": "assistant",
            "parts": _parts(_field(_field(choice, "message"), "content"))
            + _tool_calls(_field(choice, "message")),
            "finish_reason": _field(choice, "finish_reason"),
        }
        for choice in choices
    ]
    return _as_json(rendered, request)


def _never() -> bool:
    return False


def _global_no_op(trace: Any, metrics: Any) -> Callable[[], bool]:
    """A check, cheap enough for every call, that no global provider is configured yet.

    Until an SDK sets them, the global providers are the API's proxies (or explicit no-op
    providers): spans would not record and measurements would go nowhere, so a call need not
    build any attribute. Once an application sets a provider, the check turns false and the
    next call is traced (the proxies hand over to the real providers). A provider loaded from
    ``OTEL_PYTHON_TRACER_PROVIDER``/``OTEL_PYTHON_METER_PROVIDER`` is not a proxy either.
    """
    idle_tracers = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
    idle_meters: tuple[type, ...] = (metrics.NoOpMeterProvider,)
    # The API's proxy meter provider has no public name; look it up, and without it never
    # take the short cut for metrics (a proxy is then treated as configured: only slower).
    try:
        from opentelemetry.metrics import _internal as metrics_internal

        proxy_meters: object = getattr(metrics_internal, "_ProxyMeterProvider", None)
    except ImportError:  # pragma: no cover - every API release so far has it
        proxy_meters = None
    if isinstance(proxy_meters, type):
        idle_meters += (proxy_meters,)
    get_tracer_provider: Callable[[], object] = trace.get_tracer_provider
    get_meter_provider: Callable[[], object] = metrics.get_meter_provider

    def idle() -> bool:
        # Exact classes: an application's provider that subclasses a no-op or proxy class
        # (a test's capturing provider, a delegating one) may record, so it is traced.
        return (
            type(get_tracer_provider()) in idle_tracers
            and type(get_meter_provider()) in idle_meters
        )

    return idle


class _Instruments:
    """The tracer and the three histograms of one ``with_tracing`` wrapper."""

    __slots__ = (
        "attach",
        "client",
        "detach",
        "duration",
        "error_status",
        "explicit",
        "first_chunk",
        "idle",
        "in_context",
        "tokens",
        "tracer",
    )

    def __init__(
        self, tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None
    ) -> None:
        trace, metrics = _otel()
        package = __name__.partition(".")[0]  # the instrumentation scope: "fixedmodel"

        # Providers given by the caller live in this process; the global ones are looked up
        # again wherever the wrapper is rebuilt (see _Traced.__reduce__).
        self.explicit = tracer_provider is not None or meter_provider is not None
        self.tracer: Tracer = trace.get_tracer(
            package, tracer_provider=tracer_provider, schema_url=SCHEMA_URL
        )
        from opentelemetry import context

        self.attach: Callable[[Any], Any] = context.attach
        self.detach: Callable[[Any], None] = context.detach
        self.in_context: Callable[[Span], Any] = trace.set_span_in_context
        self.client: Any = trace.SpanKind.CLIENT
        error_code: Any = trace.StatusCode.ERROR
        status: Callable[..., Any] = trace.Status
        self.error_status: Callable[[str], Any] = lambda text: status(error_code, text)
        self.idle: Callable[[], bool] = _never if self.explicit else _global_no_op(trace, metrics)
        meter = metrics.get_meter(package, meter_provider=meter_provider, schema_url=SCHEMA_URL)
        self.duration: Histogram = self._histogram(
            meter,
            "gen_ai.client.operation.duration",
            "s",
            "GenAI operation duration.",
            _DURATION_BUCKETS,
        )
        self.tokens: Histogram = self._histogram(
            meter,
            "gen_ai.client.token.usage",
            "{token}",
            "Number of input and output tokens used.",
            _TOKEN_BUCKETS,
        )
        self.first_chunk: Histogram = self._histogram(
            meter,
            "gen_ai.client.operation.time_to_first_chunk",
            "s",
            "Time to receive the first chunk of a streamed answer.",
            _DURATION_BUCKETS,
        )

    @staticmethod
    def _histogram(
        meter: Any, name: str, unit: str, description: str, buckets: Sequence[float]
    ) -> Histogram:
        try:
            try:
                histogram: Histogram = meter.create_histogram(
                    name,
                    unit=unit,
                    description=description,
                    explicit_bucket_boundaries_advisory=list(buckets),
                )
            except TypeError:  # an API older than 1.23 takes no advisory
                histogram = meter.create_histogram(name, unit=unit, description=description)
        except Exception as fault:  # A faulty meter costs its metric, not the wrapper.
            observer_fault("with_tracing: creating a histogram", fault)
            return cast("Histogram", _Unrecorded())
        return histogram


class _Unrecorded:
    """Stands in for a histogram the meter failed to create: measurements go nowhere."""

    __slots__ = ()

    def record(self, *_args: object, **_kwargs: object) -> None:
        return None


def _mark_failed(instruments: _Instruments, span: Span, error: BaseException) -> str:
    """Record ``error`` on ``span`` (error.type, ERROR status); return its error.type."""
    error_type = type(error).__qualname__
    if isinstance(error, Exception):
        # As the API's use_span records it: an "exception" event (not for
        # cancellation and other BaseExceptions, which are not errors of the call).
        span.record_exception(error)
    span.set_attribute("error.type", error_type)
    status = status_of(error)
    description = error_type if status is None else f"{error_type} (HTTP {status})"
    span.set_status(instruments.error_status(description))
    return error_type


class _AttemptSpans:
    """The attempt spans of one traced call: a child span per attempt of a routing or retry
    layer (see :mod:`fixedmodel.middleware._attempts`), made current while the attempt runs
    so that nested attempts nest.

    ``answered`` is the model of the innermost attempt that answered since the last failure:
    the model whose answer the call returns (None while unknown).
    """

    __slots__ = ("_instruments", "_operation", "answered")

    def __init__(self, instruments: _Instruments, operation: str) -> None:
        self._instruments = instruments
        self._operation = operation
        self.answered: str | None = None

    def begin(
        self, kind: AttemptKind, target: object, name: str | None, number: int | None
    ) -> object:
        model: object = getattr(target, "model", None)
        known = model if isinstance(model, str) and model else None
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": self._operation,
            "gen_ai.provider.name": provider_name(known),
            "fixedmodel.attempt.kind": kind,
        }
        if known is not None:
            attributes["gen_ai.request.model"] = known
        if name is not None:
            attributes["fixedmodel.attempt.name"] = name
        if number is not None:
            attributes["fixedmodel.attempt.number"] = number
        instruments = self._instruments
        token: object = None
        try:
            span: Span = instruments.tracer.start_span(
                self._span_name(known), kind=instruments.client, attributes=attributes
            )
        except Exception as fault:  # No span, but the model that answers is still followed.
            observer_fault("with_tracing: starting an attempt's span", fault)
            return None, None, known
        try:
            token = instruments.attach(instruments.in_context(span))
        except Exception as fault:
            observer_fault("with_tracing: making an attempt's span current", fault)
        return span, token, known

    def end(self, handle: object, error: BaseException | None) -> None:
        span, token, model = cast("tuple[Span | None, object, str | None]", handle)
        if error is not None:
            self.answered = None
        elif self.answered is None:
            self.answered = model
        if span is None:
            return
        try:
            if token is not None:
                self._instruments.detach(token)
        finally:
            try:
                if error is not None:
                    _mark_failed(self._instruments, span, error)
                elif self.answered != model and self.answered is not None:
                    # A layer inside it routed to another model, which answered.
                    span.update_name(self._span_name(self.answered))
            finally:
                span.end()

    def _span_name(self, model: str | None) -> str:
        return f"{self._operation} {model}" if model is not None else self._operation


def _layers(info: CallInfo) -> dict[str, Any]:
    return {
        "fixedmodel.attempts": requests_made(info),
        "fixedmodel.cache_hit": info.cache_hit,
        "fixedmodel.rate_limit.wait": info.rate_limit_wait,
    }


def _metric_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    keep = (
        "gen_ai.operation.name",
        "gen_ai.provider.name",
        "gen_ai.request.model",
        "gen_ai.response.model",
        "server.address",
        "server.port",
        "error.type",
    )
    return {name: attributes[name] for name in keep if name in attributes}


class _TracedCall:
    """One traced call: its span and what ending it needs (see ``_Traced._begin``)."""

    __slots__ = ("attributes", "info", "observed", "opened", "request", "span", "started", "token")
    token: object  # The context attached for the call, or None.
    observed: tuple[_AttemptSpans, Token[AttemptObserver | None]] | None
    info: CallInfo
    opened: Token[CallInfo | None] | None
    started: float

    def __init__(self, span: Span, attributes: dict[str, Any], request: dict[str, Any]) -> None:
        self.span = span
        self.attributes = attributes
        self.request = request


class _Traced(Wrapper):
    """What the sync and async traced callables share: starting and ending spans."""

    __slots__ = ("_call", "_capture", "_instruments", "_read")

    def __init__(
        self,
        inner: ModelCallable,
        instruments: _Instruments,
        capture_content: bool,
    ) -> None:
        super().__init__(inner)
        self._call: Callable[..., Any] = inner  # litellm boundary: results typed by the Protocols
        self._instruments = instruments
        self._capture = capture_content
        self._read = request_reader(inner)

    def __reduce__(self) -> tuple[Any, ...]:
        if self._instruments.explicit:
            refuse_pickling(
                "with_tracing() given tracer_provider=/meter_provider=",
                "with_tracing() without providers, and configure OpenTelemetry's global "
                "providers in each worker process",
            )
        return (_rebuild_traced, (self._inner, self._capture))

    def _start(self, kwargs: dict[str, Any]) -> _TracedCall:
        request = self._read(kwargs)
        model = self.model
        attributes = request_attributes(model, request_kind(request), request)
        if self._capture:
            rendered = input_messages(request)
            if rendered is not None:
                attributes["gen_ai.input.messages"] = rendered
        operation = attributes["gen_ai.operation.name"]
        name = f"{operation} {model}" if model is not None else operation
        span = self._instruments.tracer.start_span(
            name, kind=self._instruments.client, attributes=attributes
        )
        return _TracedCall(span, attributes, request)

    def _begin(self, kwargs: dict[str, Any]) -> _TracedCall | None:
        """Start the call's span and make it current; ``None``: call untraced (logged).

        Then the attempts below are observed, the call's record joined and the clock read.
        """
        instruments = self._instruments
        try:
            call = self._start(kwargs)
        except Exception as fault:
            observer_fault("with_tracing: starting a span", fault)
            return None
        try:
            call.token = instruments.attach(instruments.in_context(call.span))
        except Exception as fault:
            observer_fault("with_tracing: making a span current", fault)
            call.token = None
        call.observed = self._observe(call.span, call.attributes)
        call.info, call.opened = join_call()
        call.started = time.perf_counter()
        return call

    def _observe(
        self, span: Span, attributes: Mapping[str, Any]
    ) -> tuple[_AttemptSpans, Token[AttemptObserver | None]] | None:
        """Have the routing and retry layers below report their attempts, as child spans of
        ``span`` (only when it records: a call the sampler dropped gets no attempt work)."""
        try:
            if not span.is_recording():
                return None
            spans = _AttemptSpans(self._instruments, attributes["gen_ai.operation.name"])
            return spans, observing(spans)
        except Exception as fault:
            observer_fault("with_tracing: observing attempts", fault)
            return None

    def _leave(self, call: _TracedCall, *, answered: bool) -> None:
        """Stop observing attempts, restore the context and leave the call's record.

        An answered call's span is named after the model that gave the answer, when a
        routing layer below chose another model than the one asked.
        """
        span, attributes = call.span, call.attributes
        if call.observed is not None:
            spans, observer = call.observed
            try:
                stop_observing(observer)
                model, asked = spans.answered, attributes.get("gen_ai.request.model")
                if answered and model is not None and model != asked:
                    span.update_name(f"{attributes['gen_ai.operation.name']} {model}")
            except Exception as fault:
                observer_fault("with_tracing: ending the observation of attempts", fault)
        if call.token is not None:
            try:
                self._instruments.detach(call.token)
            except Exception as fault:
                observer_fault("with_tracing: restoring the context", fault)
        leave_call(call.opened)

    def _ended(self, call: _TracedCall, result: object) -> None:
        """Record a call that returned: its span, metrics, or its stream's watcher."""
        self._leave(call, answered=True)
        try:
            if is_stream_request(call.request):
                self._streamed(call, result)
            else:
                self._succeeded(call, result)
        except Exception as fault:
            observer_fault("with_tracing: recording an answer", fault)

    def _raised(self, call: _TracedCall, error: BaseException) -> None:
        """Record a call that raised; the call's own error is raised by the caller, unchanged."""
        self._leave(call, answered=False)
        try:
            self._failed(call, error)
        except Exception as fault:
            observer_fault("with_tracing: recording an error", fault)

    def _failed(self, call: _TracedCall, error: BaseException) -> None:
        error_type = _mark_failed(self._instruments, call.span, error)
        call.span.end()
        measured = _metric_attributes({**call.attributes, "error.type": error_type})
        self._instruments.duration.record(time.perf_counter() - call.started, measured)

    def _succeeded(self, call: _TracedCall, result: object) -> None:
        found = response_attributes(result, call.attributes["gen_ai.operation.name"])
        found.update(_layers(call.info))
        if self._capture:
            rendered = output_messages(result, call.request)
            if rendered is not None:
                found["gen_ai.output.messages"] = rendered
        call.span.set_attributes(found)
        call.span.end()
        self._measure({**call.attributes, **found}, call)

    def _measure(self, attributes: Mapping[str, Any], call: _TracedCall) -> None:
        measured = _metric_attributes(attributes)
        self._instruments.duration.record(time.perf_counter() - call.started, measured)
        if call.info.cache_hit:
            return  # a hit spends no tokens: they were counted when the answer was made
        for attribute, token_type in (
            ("gen_ai.usage.input_tokens", "input"),
            ("gen_ai.usage.output_tokens", "output"),
        ):
            count = attributes.get(attribute)
            if isinstance(count, int):
                self._instruments.tokens.record(
                    count, {**measured, "gen_ai.token.type": token_type}
                )

    def _streamed(self, call: _TracedCall, stream: Any) -> None:
        # Read now: the watcher must not hold the stream, or an abandoned stream would stay
        # reachable (from the watcher list) and never be collected, nor its end reported.
        response_model: object = getattr(stream, "model", None)
        span = call.span

        def ended(end: StreamEnd) -> None:
            try:
                record(end)
            except Exception as fault:
                observer_fault("with_tracing: recording a stream's end", fault)

        def record(end: StreamEnd) -> None:
            found: dict[str, Any] = _layers(call.info)
            if isinstance(response_model, str) and response_model:
                found["gen_ai.response.model"] = response_model
            if end.usage is not None:
                found["gen_ai.usage.input_tokens"] = end.usage.prompt_tokens
                found["gen_ai.usage.output_tokens"] = end.usage.completion_tokens
            if end.first_chunk_at is not None:
                first = max(0.0, end.first_chunk_at - call.started)
                found["gen_ai.response.time_to_first_chunk"] = first
            span.set_attributes(found)
            if end.error is not None:
                self._failed(call, end.error)
                return
            if not end.completed:
                span.add_event("fixedmodel.stream.abandoned", {"fixedmodel.chunks": end.chunks})
            span.end()
            everything = {**call.attributes, **found}
            self._measure(everything, call)
            if end.first_chunk_at is not None:
                self._instruments.first_chunk.record(
                    found["gen_ai.response.time_to_first_chunk"], _metric_attributes(everything)
                )

        watch_stream(stream, ended)


class _AsyncTraced(_Traced):
    __slots__ = ()

    async def __call__(self, **kwargs: Any) -> Any:
        call = None if self._instruments.idle() else self._begin(kwargs)
        if call is None:
            return await self._call(**kwargs)
        try:
            result = await self._call(**kwargs)
        except BaseException as error:
            self._raised(call, error)
            raise
        self._ended(call, result)
        return result


class _SyncTraced(_Traced):
    __slots__ = ()

    def __call__(self, **kwargs: Any) -> Any:
        call = None if self._instruments.idle() else self._begin(kwargs)
        if call is None:
            return self._call(**kwargs)
        try:
            result = self._call(**kwargs)
        except BaseException as error:
            self._raised(call, error)
            raise
        self._ended(call, result)
        return result


def with_tracing(
    fn: ModelFn,
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    capture_content: bool = False,
) -> ModelFn:
    """Trace every call of ``fn`` with OpenTelemetry (see the module docstring).

    Args:
        fn: A callable of one of the four kinds.
        tracer_provider: Where spans go; the global one (``trace.set_tracer_provider``) when
            None, which is a no-op until an SDK is configured.
        meter_provider: Where metrics go; the global one when None.
        capture_content: Record message content (input and output) on the span, with the
            request's credential values redacted. Off by default: prompts and answers often
            hold personal data.

    Returns:
        A callable of the same kind.

    Raises:
        ImportError: The OpenTelemetry API is not installed (``fixedmodel[otel]``).
        TypeError: ``fn`` is not callable, or ``capture_content`` is not a bool.
    """
    check_callable(fn, "with_tracing")
    if not isinstance(cast("object", capture_content), bool):
        msg = f"with_tracing(capture_content=) must be a bool, got {type(capture_content).__name__}"
        raise TypeError(msg)
    instruments = _Instruments(tracer_provider, meter_provider)
    kind = _AsyncTraced if is_async_callable(fn) else _SyncTraced
    return cast("ModelFn", kind(fn, instruments, capture_content))


def _rebuild_traced(inner: ModelFn, capture_content: bool) -> ModelFn:
    """Unpickle a traced callable: trace it again with this process's global providers."""
    return with_tracing(inner, capture_content=capture_content)
