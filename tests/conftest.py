"""Suite-wide setup.

litellm must never reach for the network while the tests import it, and an event loop
litellm leaves behind must not be collected, unclosed, during a later test.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

# pytester runs the pytest plugin of fixedmodel.testing in throwaway projects.
pytest_plugins = ["pytester"]


def _thread_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop set on this thread, without creating one as get_event_loop may."""
    local = getattr(asyncio.get_event_loop_policy(), "_local", None)
    loop: object = getattr(local, "_loop", None)
    return loop if isinstance(loop, asyncio.AbstractEventLoop) else None


@pytest.fixture(autouse=True)
def _close_the_loop_litellm_leaves() -> Iterator[None]:
    # litellm 1.110's sync path dispatches its service hooks on asyncio.get_event_loop(),
    # which on the main thread creates and sets a loop nobody closes. The next async test's
    # runner replaces it, and it is garbage-collected unclosed (a ResourceWarning, an error
    # here) in whichever test runs then. Close it at the end of the test that made it.
    before = _thread_loop()
    yield
    after = _thread_loop()
    if after is not None and after is not before and not after.is_running():
        if not after.is_closed():
            after.close()
        asyncio.set_event_loop(None)
