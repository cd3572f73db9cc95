"""How many tokens a call costs: estimated before it is made, read from ``usage`` after.

The estimate runs on the caller's thread or event loop for every request, so it does no I/O
and nothing slow: text is counted with ``litellm.token_counter`` (the bound model's
tokenizer, loaded once when the limiter wraps), and every part that is not text (an image, a
sound, a file, a video) is charged a fixed, documented amount without being fetched or
decoded. litellm's own counter downloads an ``image_url`` to read its size, synchronously,
and would stall an event loop as long as the image host takes; it never sees those parts
here. The provider's reported ``usage`` replaces the estimate after the call.

Fixed charges per part (the estimate only has to be in the right range; it is corrected):

- image (``image_url``, Anthropic-style ``image``): OpenAI's rule for GPT-4o-class models
  (https://platform.openai.com/docs/guides/images-vision, "Calculating costs"): 85 tokens
  at ``detail: "low"``; otherwise 85 plus 170 per 512-pixel tile of the image scaled to fit
  2048 x 2048 and then to 768 pixels on its short side: at most 8 tiles, so 1,445 tokens,
  the charge used since the size is not read.
- audio (``input_audio``): about 10 tokens per second of sound (OpenAI's audio models count
  one token per 100 ms); the duration is taken as the decoded size at 16 kB per second
  (compressed speech), which overestimates uncompressed audio. At least 10.
- file or document (``file``, ``document``, ``input_file``): a document's text is counted
  when it is given as text; otherwise one image's charge per 50 kB of data (about a page of
  a PDF, which OpenAI sends as its text and an image of each page), at least one.
- video (``video_url``, ``video``, ``input_video``): 2,630 tokens, ten seconds at Gemini's
  263 tokens per second of video (https://ai.google.dev/gemini-api/docs/tokens).
- any other part: its JSON-ish text at about four characters per token.

A text longer than 200,000 characters (about 50,000 tokens) is not tokenized whole: its
first 50,000 characters are, and the count is scaled by the text's length. Tokenizing 5 MB
takes about a third of a second of CPU, on the caller's event loop; the estimate is
corrected by ``usage`` after the call anyway.

Models whose tokenizer litellm would download from Hugging Face on first use (Llama 2 and 3,
Replicate, Cohere Command R) are counted with litellm's default tokenizer instead, so that
no estimate, the first included, ever waits for a download.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, cast

from fixedmodel._litellm import litellm_module
from fixedmodel._pydantic import read_attribute
from fixedmodel.middleware._call import is_stream_request, request_kind

__all__ = ["estimate_tokens", "used_tokens", "warm_tokenizer"]

IMAGE_LOW_TOKENS = 85
"""Tokens charged for an image part with ``detail: "low"`` (OpenAI's rule)."""
IMAGE_TOKENS = 85 + 170 * 8
"""Tokens charged for any other image part: the most OpenAI's tile rule can give (1,445)."""
AUDIO_TOKENS_PER_SECOND = 10
_AUDIO_BYTES_PER_SECOND = 16_000
_DOCUMENT_BYTES_PER_IMAGE = 50_000
VIDEO_TOKENS = 2_630
"""Tokens charged for a video part: ten seconds at 263 tokens per second."""
LONG_TEXT = 200_000
"""Characters above which a text's tokens are extrapolated from its first ``_SAMPLE``."""
_SAMPLE = 50_000

# Parts whose text is counted, and the field that holds it (litellm's names).
_TEXT_FIELDS = {
    "text": "text",
    "input_text": "text",
    "output_text": "text",
    "refusal": "refusal",
    "thinking": "thinking",
    "redacted_thinking": "thinking",
}
_IMAGE_KINDS = frozenset({"image_url", "image", "input_image"})
_AUDIO_KINDS = frozenset({"input_audio", "audio"})
_DOCUMENT_KINDS = frozenset({"file", "document", "input_file"})
_VIDEO_KINDS = frozenset({"video_url", "video", "input_video"})
# Names in a model that make litellm load a tokenizer from the Hugging Face hub
# (litellm.utils.huggingface_tokenizer_kind); anthropic and deepseek ship with litellm.
_DOWNLOADED_TOKENIZERS = ("llama-2", "llama-3", "replicate", "command-r")


def _rough_tokens(value: object) -> int:
    try:
        return len(repr(value)) // 4 + 1
    except RecursionError:  # Nested deeper than repr goes: count it without recursion.
        return _flat_size(value) // 4 + 1


def _flat_size(value: object) -> int:
    """About the length of ``value``'s text, walked with a stack instead of recursion."""
    size, pending = 0, [value]
    while pending:
        item = pending.pop()
        if isinstance(item, (str, bytes)):
            size += len(item) + 2
        elif isinstance(item, Mapping):
            fields: Mapping[object, object] = item  # pyright: ignore[reportUnknownVariableType]
            size += 2
            for name, field in fields.items():
                pending += (name, field)
        elif isinstance(item, Sequence):
            items: Sequence[object] = item  # pyright: ignore[reportUnknownVariableType]
            size += 2
            pending += items
        else:
            size += len(repr(item)) if isinstance(item, (int, float)) else 8
    return size


def _tokenizer_model(model: str | None) -> str:
    name = (model or "").lower()
    return "" if any(part in name for part in _DOWNLOADED_TOKENIZERS) else (model or "")


def _count(model: str, **arguments: object) -> int:
    try:
        # litellm boundary: token_counter is untyped (Any) through the lazily imported module.
        counted: Any = litellm_module().token_counter(model=model, **arguments)
        return int(counted)
    except Exception:  # litellm raises various errors on content it cannot tokenize
        return _rough_tokens(arguments)


def warm_tokenizer(model: str | None) -> None:
    """Load the tokenizer of ``model`` now, so that the first estimate does not stall a loop.

    The first load takes a noticeable fraction of a second. Tokenizers litellm would download
    are never used (see the module docstring).
    """
    _count(_tokenizer_model(model), text="warm-up")


def _sequence(value: object) -> Sequence[object] | None:
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        items: Sequence[object] = value  # pyright: ignore[reportUnknownVariableType]
        return items
    return None


def _mapping(value: object) -> Mapping[str, object] | None:
    if isinstance(value, Mapping):
        fields: Mapping[str, object] = value  # pyright: ignore[reportUnknownVariableType]
        return fields
    dump = getattr(value, "model_dump", None)  # A pydantic message or part (litellm's types).
    if callable(dump):
        dumped: object = dump()
        return _mapping(dumped) if isinstance(dumped, Mapping) else None  # pyright: ignore[reportUnknownArgumentType]
    return None


def _data_bytes(value: object) -> int:
    """Decoded size of base64 data (a data URL or bare base64) found in ``value``."""
    if isinstance(value, str):
        return len(value.partition("base64,")[2] or value) * 3 // 4
    fields = _mapping(value)
    if fields is None:
        return 0
    return max((_data_bytes(item) for item in fields.values()), default=0)


def _image_tokens(part: Mapping[str, object]) -> int:
    image = _mapping(part.get("image_url"))
    detail = image.get("detail") if image is not None else part.get("detail")
    return IMAGE_LOW_TOKENS if detail == "low" else IMAGE_TOKENS


class _Content:
    """The text of a message's parts, and the fixed charges of the parts that are not text."""

    __slots__ = ("fixed", "texts")

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.fixed = 0

    def add(self, value: object) -> None:
        if isinstance(value, str):
            self.texts.append(value)
            return
        items = _sequence(value)
        if items is not None:
            for item in items:
                self.add(item)
            return
        part = _mapping(value)
        if part is None:
            if value is not None:
                self.fixed += _rough_tokens(value)
            return
        self._part(part)

    def _part(self, part: Mapping[str, object]) -> None:
        kind = part.get("type")
        if isinstance(kind, str) and kind in _TEXT_FIELDS:
            self.add(part.get(_TEXT_FIELDS[kind]))
        elif kind in _IMAGE_KINDS:
            self.fixed += _image_tokens(part)
        elif kind in _AUDIO_KINDS:
            seconds = _data_bytes(part) / _AUDIO_BYTES_PER_SECOND
            self.fixed += max(AUDIO_TOKENS_PER_SECOND, int(seconds * AUDIO_TOKENS_PER_SECOND))
        elif kind in _DOCUMENT_KINDS:
            source = _mapping(part.get("source"))
            if source is not None and source.get("type") == "text":
                self.add(source.get("data"))
            else:
                pages = _data_bytes(part) // _DOCUMENT_BYTES_PER_IMAGE
                self.fixed += IMAGE_TOKENS * max(1, pages)
        elif kind in _VIDEO_KINDS:
            self.fixed += VIDEO_TOKENS
        elif kind in ("tool_result", "tool_use"):  # Anthropic-style blocks nest content.
            self.add(part.get("content"))
            if "input" in part:
                self.fixed += _rough_tokens(part.get("input"))
        else:
            self.fixed += _rough_tokens(part)


def _text_only(messages: Sequence[object]) -> tuple[list[object], int]:
    """The messages with their content parts reduced to text, and the charge of the rest."""
    plain: list[object] = []
    fixed = 0
    for message in messages:
        fields = _mapping(message)
        content = fields.get("content") if fields is not None else None
        if fields is None or isinstance(content, str) or content is None:
            plain.append(message)
            continue
        parts = _Content()
        parts.add(content)
        plain.append({**fields, "content": "".join(parts.texts)})
        fixed += parts.fixed
    return plain, fixed


def _text_tokens(model: str, text: str) -> int:
    """Tokens of ``text``: counted, or for a very long text extrapolated from its head."""
    if len(text) <= LONG_TEXT:
        return _count(model, text=text)
    head = text[:_SAMPLE]
    return math.ceil(_count(model, text=head) * len(text) / len(head))


def _sampled(messages: list[object], model: str) -> tuple[list[object], int]:
    """The messages with each very long text cut to its head, and the tokens cut away."""
    kept: list[object] = []
    extra = 0
    for message in messages:
        fields = _mapping(message)
        content = fields.get("content") if fields is not None else None
        if fields is None or not isinstance(content, str) or len(content) <= LONG_TEXT:
            kept.append(message)
            continue
        head = content[:_SAMPLE]
        extra += _text_tokens(model, content) - _count(model, text=head)
        kept.append({**fields, "content": head})
    return kept, extra


def _input_tokens(value: object, model: str) -> int:
    if isinstance(value, str):
        return _text_tokens(model, value)
    items = _sequence(value)
    if not items:
        return _rough_tokens(value)
    if all(isinstance(item, str) for item in items):
        texts = cast("Sequence[str]", items)
        if sum(len(text) for text in texts) > LONG_TEXT:
            return sum(_text_tokens(model, text) for text in texts)
        return _count(model, text=list(texts))
    # Pre-tokenised input: one int per token, or one sequence of ints per text.
    return sum(len(part) if (part := _sequence(item)) is not None else 1 for item in items)


def _count_limit(*values: object, default: int) -> int:
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return default


def estimate_tokens(
    kwargs: Mapping[str, object], model: str | None, assumed_completion_tokens: int
) -> int:
    """Estimate the tokens a call will use, before it is made, without I/O.

    Args:
        kwargs: The request litellm will receive (see ``request_reader``).
        model: The bound model, for its tokenizer; litellm's default tokenizer when ``None``.
        assumed_completion_tokens: Completion tokens per choice when the call sets neither
            ``max_completion_tokens`` nor ``max_tokens``.

    Returns:
        For an embedding, the tokens of the input. For a completion, the tokens of the
        messages' text (and tools), the fixed charges of their other parts (see the module
        docstring), plus ``n`` times the completion tokens the call allows.
    """
    try:
        return _estimate(kwargs, _tokenizer_model(model), assumed_completion_tokens)
    except RecursionError:
        # Content nested deeper than Python recurses (a tool schema of depth 2000): the
        # call itself may still go through, so its estimate is the text size alone.
        return _flat_size(dict(kwargs)) // 4 + 1 + assumed_completion_tokens


def _estimate(kwargs: Mapping[str, object], name: str, assumed_completion_tokens: int) -> int:
    if request_kind(dict(kwargs)) == "embedding":
        return _input_tokens(kwargs.get("input"), name)
    messages, tools = _sequence(kwargs.get("messages")), _sequence(kwargs.get("tools"))
    if messages is None:
        prompt = _count(name, messages=kwargs.get("messages"), tools=list(tools) if tools else None)
    else:
        plain, fixed = _text_only(messages)
        plain, sampled = _sampled(plain, name)
        prompt = (
            fixed + sampled + _count(name, messages=plain, tools=list(tools) if tools else None)
        )
    completion = _count_limit(
        kwargs.get("max_completion_tokens"),
        kwargs.get("max_tokens"),
        default=assumed_completion_tokens,
    )
    return prompt + _count_limit(kwargs.get("n"), default=1) * completion


def used_tokens(kwargs: Mapping[str, object], result: object) -> int | None:
    """Return the tokens a finished call used, from its ``usage``; ``None`` if unknown.

    Streams are not read here (their usage arrives with the last chunk: the limiter settles
    them when they end). A ``total_tokens`` of 0 next to a positive prompt count (litellm's
    mocked embeddings) counts as the sum of the parts.

    Args:
        kwargs: The request litellm received (see ``request_reader``).
        result: What the call returned.
    """
    if is_stream_request(kwargs):
        return None
    # litellm boundary: ``usage`` is not declared on the response types.
    usage = read_attribute(result, "usage")
    if usage is None:
        return None
    total = read_attribute(usage, "total_tokens")
    if isinstance(total, int) and total > 0:
        return total
    parts = [getattr(usage, name, None) for name in ("prompt_tokens", "completion_tokens")]
    counted = [part for part in parts if isinstance(part, int)]
    if counted:
        return sum(counted)
    return total if isinstance(total, int) else None
