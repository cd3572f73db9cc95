"""The lines of a provider batch job: requests out, answers and errors back.

A line sent is the request litellm would send live for the same call: the bound object's
defaults and ``extra_params`` merged, litellm's own mapping of the parameters for the
provider (``litellm.utils.get_optional_params``), the provider's model name, and no
credential or transport setting. A line read back becomes what a live call returns: a
``ModelResponse`` / ``EmbeddingResponse`` priced at the provider's batch rate, or the
litellm exception a live call raises for the same status and error body.

Formats: OpenAI's Batch API input and output lines
(https://platform.openai.com/docs/api-reference/batch/request-input and
.../batch/request-output).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any, cast

from fixedmodel._litellm import litellm_module
from fixedmodel.middleware._call import RequestKind, request_reader

if TYPE_CHECKING:
    from litellm.types.utils import EmbeddingResponse, ModelResponse

__all__ = ["LineFormat", "LineOutcome", "ProviderBatchLineError", "read_line"]

# Keywords that steer litellm or the HTTP client, never the provider's answer: kept out of
# every line (credentials first among them; the files and batches calls get them instead).
_NOT_IN_BODY = frozenset(
    {
        "api_key",
        "api_base",
        "base_url",
        "api_version",
        "organization",
        "timeout",
        "stream_timeout",
        "max_retries",
        "num_retries",
        "extra_headers",
        "headers",
        "metadata",
        "mock_response",
        "mock_timeout",
        "custom_llm_provider",
        "client",
        "shared_session",
        "caching",
        "cache",
        "litellm_metadata",
        "litellm_logging_obj",
        "logger_fn",
        "azure_ad_token",
        "azure_ad_token_provider",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "vertex_credentials",
        "input_cost_per_token",
        "output_cost_per_token",
        "input_cost_per_second",
        "output_cost_per_second",
        "fallbacks",
        "context_window_fallback_dict",
    }
)


class ProviderBatchLineError(Exception):
    """A batch line the provider did not answer (expired, cancelled or refused as a whole).

    Attributes:
        custom_id: The line's id.
        code: The provider's error code, e.g. ``"batch_expired"``.
        message: The provider's message.
    """

    def __init__(self, custom_id: str, code: str, message: str) -> None:
        super().__init__(custom_id, code, message)
        self.custom_id = custom_id
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"batch line {self.custom_id!r} not answered ({self.code}): {self.message}"


@dataclass(frozen=True)
class LineOutcome:
    """One output or error line, parsed.

    Attributes:
        custom_id: The line's id.
        status_code: HTTP status of the provider's answer, or None when it gave none.
        body: The answer's JSON body (an answer or an ``{"error": ...}`` object), or None.
        error: The line's own ``error`` object (e.g. ``batch_expired``), or None.
    """

    custom_id: str
    status_code: int | None
    body: dict[str, Any] | None
    error: dict[str, Any] | None

    @property
    def ok(self) -> bool:
        """Answered: no error object and a 2xx status (OpenAI's rule for a success)."""
        code = self.status_code
        return self.error is None and code is not None and 200 <= code < 300

    @property
    def unanswered(self) -> bool:
        """Never sent to the model (expired or cancelled before its turn)."""
        return self.status_code is None


def _plain(usage: object) -> bool:
    """Usage with no cached, audio, image or reasoning tokens (priced at other rates)."""
    for name in ("prompt_tokens_details", "completion_tokens_details"):
        details: object = getattr(usage, name, None)
        if details is None:
            continue
        for field in ("cached_tokens", "audio_tokens", "image_tokens", "reasoning_tokens"):
            if getattr(details, field, None):
                return False
    return not getattr(usage, "cache_creation_input_tokens", None) and not getattr(
        usage, "cache_read_input_tokens", None
    )


def read_line(raw: bytes | str) -> LineOutcome:
    """Parse one line of an output or error file.

    Raises:
        ValueError: The line is not a JSON object with a string ``custom_id``.
    """
    data: object = json.loads(raw)
    if not isinstance(data, dict):
        msg = "a batch output line must be a JSON object"
        raise ValueError(msg)
    line = cast("dict[str, Any]", data)
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str):
        msg = "a batch output line has no string custom_id"
        raise ValueError(msg)
    response = line.get("response")
    status: int | None = None
    body: dict[str, Any] | None = None
    if isinstance(response, dict):
        answer = cast("dict[str, Any]", response)
        code = answer.get("status_code")
        status = code if isinstance(code, int) else None
        given = answer.get("body")
        body = cast("dict[str, Any]", given) if isinstance(given, dict) else None
    error = line.get("error")
    return LineOutcome(
        custom_id, status, body, cast("dict[str, Any]", error) if isinstance(error, dict) else None
    )


class LineFormat:
    """Builds a bound object's batch lines and reads their answers back.

    Args:
        bound: The bound object at the bottom of the stack (``bind_acompletion`` or
            ``bind_aembedding``).
        kind: ``"completion"`` or ``"embedding"``.
    """

    def __init__(self, bound: object, kind: RequestKind) -> None:
        litellm = litellm_module()
        self.kind: RequestKind = kind
        self.model: str = cast("str", getattr(bound, "model"))  # noqa: B009 - bound objects have it
        self._read = request_reader(bound)
        defaults = self._read({})
        hint = defaults.get("custom_llm_provider")
        # Any: litellm's untyped helper; returns (model, provider, key, api_base).
        found: Any = litellm.get_llm_provider(model=self.model, custom_llm_provider=hint)
        self.provider_model: str = found[0]
        self.provider: str = found[1]
        path = "/chat/completions" if kind == "completion" else "/embeddings"
        # Azure's Batch API names the endpoint without the version prefix (Azure OpenAI
        # docs, "Global batch": "url": "/chat/completions").
        self.endpoint: str = path if self.provider == "azure" else f"/v1{path}"
        self.connection: dict[str, Any] = {
            name: defaults[name]
            for name in ("api_key", "api_base", "base_url", "api_version", "organization")
            if defaults.get(name) is not None
        }
        self._templates: dict[object, dict[str, Any]] = {}
        self._flat: tuple[float, float] | bool | None = None  # None: not looked up yet
        self._flat_checked = False
        self._full_dump: bool | None = None  # None: not looked up yet

    def body(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The JSON body litellm would send live for a call with ``kwargs``."""
        request = self._read(dict(kwargs))
        content_name = "messages" if self.kind == "completion" else "input"
        content = request.pop(content_name)
        params = {n: v for n, v in request.items() if n not in _NOT_IN_BODY and n != "stream"}
        extra = params.pop("extra_body", None)
        signature: object
        try:  # Plain values (the usual case): hashing them is far cheaper than encoding.
            signature = frozenset(params.items())
        except TypeError:  # A list or dict among them: its JSON text keys the mapping.
            signature = json.dumps(params, sort_keys=True, default=repr)
        template = self._templates.get(signature)
        if template is None:
            template = self._map(params)
            if len(self._templates) < 1024:
                self._templates[signature] = template
        body: dict[str, Any] = {"model": self.provider_model, content_name: content, **template}
        if isinstance(extra, Mapping):
            body.update(cast("Mapping[str, Any]", extra))
        return body

    def line(self, custom_id: str, kwargs: Mapping[str, Any]) -> bytes:
        """One input line (JSON, ending in a newline) for OpenAI's Batch API."""
        line = {
            "custom_id": custom_id,
            "method": "POST",
            "url": self.endpoint,
            "body": self.body(kwargs),
        }
        # ASCII JSON: the C encoder's fast path, and any text (a lone surrogate too) escaped.
        return json.dumps(line).encode("ascii") + b"\n"

    def _map(self, params: dict[str, Any]) -> dict[str, Any]:
        """litellm's mapping of the optional parameters for this provider and model."""
        utils: Any = litellm_module().utils  # Any: litellm's untyped helpers.
        if self.kind == "completion":
            mapped = utils.get_optional_params(
                model=self.provider_model, custom_llm_provider=self.provider, **params
            )
        else:
            mapped = utils.get_optional_params_embeddings(
                model=self.provider_model, custom_llm_provider=self.provider, **params
            )
        result = {n: v for n, v in dict(mapped).items() if n not in ("stream", "extra_body")}
        extra = mapped.get("extra_body")
        if isinstance(extra, Mapping):
            result.update(cast("Mapping[str, Any]", extra))
        return result

    def answer(self, body: dict[str, Any]) -> ModelResponse | EmbeddingResponse:
        """Rebuild the answer a live call would return, priced at the batch rate."""
        litellm = litellm_module()
        # Any: litellm's untyped converter, the one its OpenAI path applies to a live
        # answer's JSON body.
        convert: Any = import_module(
            "litellm.litellm_core_utils.llm_response_utils.convert_dict_to_response"
        ).convert_to_model_response_object
        empty = (
            litellm.ModelResponse() if self.kind == "completion" else litellm.EmbeddingResponse()
        )
        response: ModelResponse | EmbeddingResponse = convert(
            response_object=self._as_live(body),
            model_response_object=empty,
            response_type=self.kind,
        )
        hidden: dict[str, Any] = getattr(response, "_hidden_params")  # noqa: B009 - litellm's
        hidden["custom_llm_provider"] = self.provider
        hidden["response_cost"] = self.cost(response)
        hidden["batch"] = True
        return response

    def _as_live(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` as litellm's live OpenAI path hands it to the converter.

        Newer litellm releases pass on only the fields the provider sent
        (``model_dump_provider_response``); older ones (1.100) dump the SDK's parsed
        ``ChatCompletion`` whole, so its unset fields arrive as None and the live answer
        has them too.
        """
        if self.kind != "completion":
            return body
        if self._full_dump is None:
            common = import_module("litellm.llms.openai.common_utils")
            self._full_dump = not hasattr(common, "model_dump_provider_response")
        if not self._full_dump:
            return body
        from openai.types.chat import ChatCompletion

        try:
            return ChatCompletion.model_validate(body).model_dump()
        except ValueError:  # not a chat completion after all: as the provider sent it
            return body

    def cost(self, response: ModelResponse | EmbeddingResponse) -> float:
        """USD for ``response`` at the provider's batch price (0 when litellm has none).

        litellm's ``batch_cost_calculator`` decides (about 1.7 ms a line). Where the model
        has flat batch rates and the usage has only plain input and output tokens, the same
        sum is taken from the rates directly, after checking once per job that it agrees
        with litellm's figure.
        """
        usage: object = getattr(response, "usage", None)
        if usage is None:
            return 0.0
        prompt = getattr(usage, "prompt_tokens", None)
        completion = getattr(usage, "completion_tokens", None) or 0
        plain = isinstance(prompt, int) and isinstance(completion, int) and _plain(usage)
        flat = self._flat_rates() if plain else None
        if flat is not None:
            fast = cast("int", prompt) * flat[0] + cast("int", completion) * flat[1]
            if self._flat_checked:
                return fast
            exact = self._litellm_cost(usage)
            self._flat_checked = True
            if abs(exact - fast) > 1e-12 * max(1.0, exact):
                self._flat = False  # litellm prices this model otherwise: always ask it.
            return exact
        return self._litellm_cost(usage)

    def _litellm_cost(self, usage: object) -> float:
        from litellm.cost_calculator import batch_cost_calculator

        try:
            prompt, completion = batch_cost_calculator(
                usage=cast("Any", usage),
                model=self.provider_model,
                custom_llm_provider=self.provider,
            )
        except Exception:  # An unpriced model costs what litellm says for live calls: unknown.
            return 0.0
        return float(prompt) + float(completion)

    def _flat_rates(self) -> tuple[float, float] | None:
        """The model's batch rates per input and output token when they are flat."""
        if self._flat is None:
            self._flat = False
            try:
                # Any: litellm's model info is a loose TypedDict.
                info: Any = litellm_module().get_model_info(
                    model=self.provider_model, custom_llm_provider=self.provider
                )
            except Exception:
                return None
            rates = (
                info.get("input_cost_per_token_batches"),
                info.get("output_cost_per_token_batches"),
            )
            tiered = any(("above" in name or "tier" in name) and info[name] for name in info)
            if not tiered and all(isinstance(r, (int, float)) for r in rates):
                self._flat = (float(rates[0]), float(rates[1]))
        flat = self._flat
        return flat if isinstance(flat, tuple) else None

    def error(self, outcome: LineOutcome) -> BaseException:
        """The exception a live call raises for this line's status and error body."""
        if outcome.status_code is None:
            given = outcome.error or {}
            return ProviderBatchLineError(
                outcome.custom_id,
                str(given.get("code") or "unanswered"),
                str(given.get("message") or "the provider did not answer this line"),
            )
        return self.status_error(outcome.status_code, outcome.body or {})

    def status_error(self, status: int, body: dict[str, Any]) -> BaseException:
        """litellm's exception for an HTTP ``status`` with JSON ``body``, as live."""
        import openai

        # Any: litellm's untyped exception mapper, the one every live call goes through.
        exception_type: Any = import_module(
            "litellm.litellm_core_utils.exception_mapping_utils"
        ).exception_type
        # The HTTP library the installed openai SDK is built on (httpx, or httpx2 in newer
        # releases): its status errors are made from that library's responses.
        sdk = import_module("openai._base_client")
        http: Any = getattr(sdk, "httpx2", None) or getattr(sdk, "httpx")  # noqa: B009
        url = f"https://batch.invalid{self.endpoint}"
        response = http.Response(status, json=body, request=http.Request("POST", url))
        client = openai.OpenAI(api_key="unused", base_url="https://batch.invalid/v1")
        try:
            make = client._make_status_error_from_response  # pyright: ignore[reportPrivateUsage]
            original = make(response)
        finally:
            client.close()
        try:
            exception_type(
                model=self.provider_model,
                original_exception=original,
                custom_llm_provider=self.provider,
            )
        except Exception as mapped:  # exception_type always raises the mapped error.
            return mapped
        return original  # pragma: no cover - exception_type raises
