"""The switch under which a bound object refuses to reach a real provider (for tests).

While the switch is on (:func:`blocking_real_requests`, or the pytest plugin's
``no_real_requests`` fixture and marker), every bound call checks where litellm would send
the request before calling litellm. It goes ahead only when no request leaves the machine:
``mock_response`` is set, or the address litellm will really use is a loopback address.

That address is resolved the way litellm resolves it for the call's provider: the request's
``api_base``, ``base_url`` and the base URL of an OpenAI ``client=`` (all of them must be
local when several are given: a completion goes to ``base_url``, an embedding to
``api_base``, either to its client's); else the base URL ``litellm.get_llm_provider``
gives the provider (e.g. ``deepseek/`` has its own host, ``ollama/`` defaults to localhost); else
``litellm.api_base``; else the provider's own environment variables (``OPENAI_BASE_URL`` and
``OPENAI_API_BASE`` for ``openai/`` only, ``ANTHROPIC_API_BASE`` for ``anthropic/``, ...,
as litellm's ``main.py`` reads them). When the provider cannot be resolved, or none of these
gives an address, the call would reach the provider's public servers and is blocked.
Anything blocked raises :class:`RealRequestError` before any connection is attempted.
"""

from __future__ import annotations

import ipaddress
import os
import threading
from collections.abc import Generator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

__all__ = ["RealRequestError", "blocking_real_requests", "check_request", "is_blocking"]


class RealRequestError(AssertionError):
    """A bound call would have reached a real provider while real requests were blocked.

    An ``AssertionError``: it reports a test that is not isolated, and no retry or fallback
    layer takes it for a provider failure.
    """


_lock = threading.Lock()
_depth = 0

# The environment variables litellm reads for a provider's base URL when the call gives none,
# in litellm's order (litellm/main.py and llms/anthropic/common_utils.py). A provider missing
# here falls back to its public host (or to what get_llm_provider resolves), so it is blocked
# unless the call names a loopback api_base: when in doubt, block.
_OPENAI_VARIABLES = ("OPENAI_BASE_URL", "OPENAI_API_BASE")
_BASE_URL_VARIABLES: dict[str, tuple[str, ...]] = {
    "openai": _OPENAI_VARIABLES,
    "text-completion-openai": _OPENAI_VARIABLES,
    "anthropic": ("ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL"),
    "azure": ("AZURE_API_BASE",),
    "azure_text": ("AZURE_API_BASE",),
    "gemini": ("GEMINI_API_BASE",),
}


def is_blocking() -> bool:
    """Whether real requests are blocked now (cheap: read on every bound call)."""
    return _depth > 0


@contextmanager
def blocking_real_requests() -> Generator[None, None, None]:
    """Block real provider requests from bound objects while the block runs.

    Process-wide (every thread and task); blocks nest.

    Raises:
        RealRequestError: From a bound call inside the block whose request would leave the
            machine.
    """
    global _depth
    with _lock:
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1


def _is_loopback(url: str) -> bool:
    """Whether ``url``'s host is a loopback IP address or the name ``localhost``.

    Other names under ``.localhost`` are not taken on trust: without systemd-resolved, glibc
    asks the DNS server for them, which may answer with any address.
    """
    host = urlsplit(url if "://" in url else f"http://{url}").hostname
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _target(model: str, arguments: Mapping[str, object]) -> tuple[str | None, str]:
    """The base URL litellm will send the request to, and where it came from.

    ``None`` when litellm would use the provider's public default (or the provider is unknown).
    """
    # litellm's completion sends to base_url over api_base, its embedding to api_base alone,
    # and an OpenAI client given as client= to its own base URL: when several are given,
    # the call goes ahead only if all of them stay local.
    given = [
        (value, name)
        for name in ("base_url", "api_base")
        if isinstance(value := arguments.get(name), str) and value
    ]
    client_base: object = getattr(arguments.get("client"), "base_url", None)
    if client_base is not None:
        given.append((str(client_base), "client.base_url"))
    if given:
        return next(((v, n) for v, n in given if not _is_loopback(v)), given[0])
    from fixedmodel._litellm import litellm_module

    litellm = litellm_module()
    provider_hint = arguments.get("custom_llm_provider")
    try:
        # Any: litellm's function, untyped for us; it returns (model, provider, key, api_base).
        resolved: Any = litellm.get_llm_provider(
            model=model,
            custom_llm_provider=provider_hint if isinstance(provider_hint, str) else None,
        )
    except Exception:  # an unknown provider: not provably local, so blocked
        return None, "an unknown provider"
    provider = str(resolved[1])
    if isinstance(resolved[3], str) and resolved[3]:
        return resolved[3], f"the {provider} provider's base URL"
    configured: object = getattr(litellm, "api_base", None)
    if isinstance(configured, str) and configured:
        return configured, "litellm.api_base"
    for name in _BASE_URL_VARIABLES.get(provider, ()):
        value = os.environ.get(name)
        if value:
            return value, f"${name}"
    return None, f"the {provider} provider"


def check_request(model: str, arguments: Mapping[str, object]) -> None:
    """Refuse ``arguments`` (what litellm is about to receive) unless they stay local.

    Raises:
        RealRequestError: The request would reach a provider that is not on this machine,
            or where it would go cannot be told.
    """
    if arguments.get("mock_response") is not None:
        return
    target, source = _target(model, arguments)
    if target is not None and _is_loopback(target):
        return
    where = f"{target!r} (from {source})" if target is not None else f"{source}'s servers"
    msg = (
        f"real requests are blocked in this test, but a call to model {model!r} would reach "
        f"{where}. Use a fake from fixedmodel.testing, mock_response=, or point api_base at "
        "a loopback server (the openai_server fixture)."
    )
    raise RealRequestError(msg)
