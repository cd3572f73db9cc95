"""The switch under which a bound object refuses to reach a real provider (for tests).

While the switch is on (:func:`blocking_real_requests`, or the pytest plugin's
``no_real_requests`` fixture and marker), every bound call checks where litellm would send
the request before calling litellm. It goes ahead only when no request leaves the machine:
``mock_response`` is set, or the request's ``api_base``/``base_url`` (or the base URL the
environment gives the provider) is a loopback address. Anything else raises
:class:`RealRequestError` before any connection is attempted.
"""

from __future__ import annotations

import ipaddress
import os
import threading
from collections.abc import Generator, Mapping
from contextlib import contextmanager
from urllib.parse import urlsplit

__all__ = ["RealRequestError", "blocking_real_requests", "check_request", "is_blocking"]


class RealRequestError(AssertionError):
    """A bound call would have reached a real provider while real requests were blocked.

    An ``AssertionError``: it reports a test that is not isolated, and no retry or fallback
    layer takes it for a provider failure.
    """


_lock = threading.Lock()
_depth = 0

# Environment variables litellm (and the openai SDK) read for an OpenAI-compatible base URL.
_BASE_URL_VARIABLES = ("OPENAI_BASE_URL", "OPENAI_API_BASE")


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
    host = urlsplit(url if "://" in url else f"http://{url}").hostname
    if host is None:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_request(model: str, arguments: Mapping[str, object]) -> None:
    """Refuse ``arguments`` (what litellm is about to receive) unless they stay local.

    Raises:
        RealRequestError: The request would reach a provider that is not on this machine.
    """
    if arguments.get("mock_response") is not None:
        return
    target: object = arguments.get("api_base") or arguments.get("base_url")
    source = "api_base"
    if not isinstance(target, str):
        target = next(
            (os.environ[name] for name in _BASE_URL_VARIABLES if os.environ.get(name)), None
        )
        source = "the environment"
    if isinstance(target, str) and _is_loopback(target):
        return
    where = f"{target!r} (from {source})" if isinstance(target, str) else "the provider's servers"
    msg = (
        f"real requests are blocked in this test, but a call to model {model!r} would reach "
        f"{where}. Use a fake from fixedmodel.testing, mock_response=, or point api_base at "
        "a loopback server (the openai_server fixture)."
    )
    raise RealRequestError(msg)
