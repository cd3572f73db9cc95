"""``with`` and ``async with`` for the objects that hold connections: leaving closes them.

Bound objects, middleware layers, stores, test fakes and batch runs all close the same way:
the block returns the object itself, and leaving it (normally or by an exception, which is
not suppressed) calls ``close()`` or awaits ``aclose()``. Said once here.
"""

from __future__ import annotations

from types import TracebackType

from typing_extensions import Self

__all__ = ["AsyncClosing", "Closing"]


class Closing:
    """``with obj:`` returns ``obj`` and calls ``obj.close()`` on the way out."""

    __slots__ = ()

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncClosing:
    """``async with obj:`` returns ``obj`` and awaits ``obj.aclose()`` on the way out."""

    __slots__ = ()

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
