"""What the sections that call litellm share: the model, the messages, and clean-up."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

MODEL = "openai/gpt-4o-mini"
"""A model litellm knows (priced in its cost map), as most users' models are."""

MESSAGES = [{"role": "user", "content": "Say hello."}]


async def close_clients() -> None:
    """Close the HTTP clients litellm made and cached on the running loop.

    litellm keeps them until told otherwise; left open, they end as "unclosed transport"
    warnings when the loop closes.
    """
    import litellm

    # The function is exported at run time but not declared to type checkers.
    close: Callable[[], Awaitable[None]] = litellm.close_litellm_async_clients  # type: ignore[attr-defined]
    await close()
