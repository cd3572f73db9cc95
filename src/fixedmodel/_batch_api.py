"""The provider's Files and Batches endpoints, through openai-python's client.

OpenAI and Azure OpenAI serve the same Batch API (Azure under ``/openai/...`` with an
``api-version``). litellm's ``acreate_batch`` / ``aretrieve_batch`` build a new OpenAI
client for every call and never close it (each poll leaves an unclosed connection), so the
job talks to these endpoints through one ``AsyncOpenAI`` / ``AsyncAzureOpenAI`` client it
owns and closes. The client reads the same settings litellm does: the bound object's
``api_key``, ``api_base`` and ``api_version``, else the provider's environment variables.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openai import AsyncAzureOpenAI, AsyncOpenAI
    from openai.types import Batch

__all__ = ["SUPPORTED_PROVIDERS", "BatchAPI"]

SUPPORTED_PROVIDERS = ("openai", "azure")
"""Providers whose Batch API the job drives (tested over loopback)."""


def _client(provider: str, connection: Mapping[str, Any]) -> AsyncOpenAI | AsyncAzureOpenAI:
    import openai

    base = connection.get("api_base") or connection.get("base_url")
    key = connection.get("api_key")
    if provider == "azure":
        version = connection.get("api_version") or os.environ.get("AZURE_API_VERSION")
        endpoint = base or os.environ.get("AZURE_API_BASE")
        if not endpoint:
            msg = "provider_batch() on Azure needs api_base (the endpoint) or AZURE_API_BASE"
            raise ValueError(msg)
        return openai.AsyncAzureOpenAI(
            api_key=key
            or os.environ.get("AZURE_API_KEY")
            or os.environ.get("AZURE_OPENAI_API_KEY"),
            azure_endpoint=str(endpoint),
            api_version=version,
        )
    return openai.AsyncOpenAI(
        api_key=key or os.environ.get("OPENAI_API_KEY"),
        base_url=base or os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_BASE"),
        organization=connection.get("organization"),
    )


class BatchAPI:
    """One provider's Files and Batches endpoints, over a client this object owns.

    Raises:
        ValueError: The provider's Batch API is not one fixedmodel drives (see
            :data:`SUPPORTED_PROVIDERS`).
    """

    def __init__(self, provider: str, connection: Mapping[str, Any]) -> None:
        if provider not in SUPPORTED_PROVIDERS:
            msg = (
                f"provider_batch() drives the Batch API of {', '.join(SUPPORTED_PROVIDERS)}; "
                f"{provider!r} is not supported yet (use abatch() for live calls, or "
                "litellm's batch functions directly: see docs/provider-batch.md)"
            )
            raise ValueError(msg)
        self.provider = provider
        self._client = _client(provider, connection)

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self._client.close()

    async def upload(self, name: str, path: Path) -> str:
        """Upload the JSONL file at ``path`` as ``name`` (purpose ``batch``); its file id."""
        with path.open("rb") as data:
            card = await self._client.files.create(file=(name, data), purpose="batch")
        return card.id

    async def find_file(self, name: str) -> str | None:
        """The id of an uploaded batch file called ``name``, if the provider has one."""
        async for card in self._client.files.list(purpose="batch"):
            if card.filename == name:
                return card.id
        return None

    async def create(self, file_id: str, endpoint: str, metadata: dict[str, str]) -> str:
        """Start a batch over the uploaded file; its batch id."""
        batch = await self._client.batches.create(
            completion_window="24h",
            endpoint=endpoint,  # type: ignore[arg-type]  # checked by LineFormat
            input_file_id=file_id,
            metadata=metadata,
        )
        return batch.id

    async def find_batch(self, file_id: str, metadata: Mapping[str, str]) -> str | None:
        """The id of a batch over ``file_id`` carrying ``metadata``, if one was made."""
        async for batch in self._client.batches.list(limit=100):
            given = batch.metadata or {}
            if batch.input_file_id == file_id and all(
                given.get(k) == v for k, v in metadata.items()
            ):
                return batch.id
        return None

    async def retrieve(self, batch_id: str) -> Batch:
        """The batch's current state."""
        return await self._client.batches.retrieve(batch_id)

    async def cancel(self, batch_id: str) -> None:
        """Ask the provider to cancel the batch."""
        await self._client.batches.cancel(batch_id)

    async def lines(self, file_id: str) -> AsyncIterator[bytes]:
        """The lines of an output or error file, streamed."""
        async with self._client.files.with_streaming_response.content(file_id) as response:
            async for line in response.iter_lines():
                if line.strip():
                    yield line.encode("utf-8", "surrogatepass")
