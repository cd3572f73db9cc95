"""Closing a bound object leaves no unclosed session, transport or socket behind."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).parents[2]

SCRIPT = textwrap.dedent(
    """
    import asyncio
    from fixedmodel import bind_acompletion, bind_aembedding, bind_completion, responses
    from tests.support.openai_server import OpenAIServer

    async def use_async(base_url):
        async with bind_acompletion("openai/m", api_base=base_url, api_key="k") as chat:
            await chat(messages=[{"role": "user", "content": "hi"}])
            stream = await chat(messages=[{"role": "user", "content": "hi"}], stream=True)
            print("".join([p async for p in responses.atext_deltas(stream)]))
        async with bind_aembedding("openai/e", api_base=base_url, api_key="k") as embed:
            print(len(responses.embeddings(await embed(input=["a", "b"]))))

    with OpenAIServer() as server:
        asyncio.run(use_async(server.base_url))
        asyncio.run(use_async(server.base_url))  # a second loop, as pytest-asyncio makes
        with bind_completion("openai/m", api_base=server.base_url, api_key="k") as chat:
            print(responses.text(chat(messages=[{"role": "user", "content": "hi"}])))
    """
)


def test_closed_bound_objects_leave_no_resource_warning() -> None:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "always::ResourceWarning", "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Hello from the loopback server.") == 3
    assert "nclosed" not in result.stderr, result.stderr
