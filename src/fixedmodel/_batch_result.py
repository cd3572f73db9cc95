"""What one request of a batch came to: an answer or an error, in a shape checkers narrow.

``BatchResult[R]`` is ``BatchSuccess[R] | BatchFailure``; ``ok`` is ``Literal[True]`` on one
and ``Literal[False]`` on the other, so ``isinstance``, ``match``, ``if r.ok is True:`` and
``if r.error is None:`` narrow it for mypy and pyright, and ``r.response`` is then the
answer, not ``R | None``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Literal, NoReturn, TypeAlias, TypeVar, cast

__all__ = [
    "BatchCancelledError",
    "BatchFailure",
    "BatchResult",
    "BatchSuccess",
    "batch_result",
]

ResponseT = TypeVar("ResponseT")


class BatchCancelledError(Exception):
    """A request of a batch that was stopped before its answer came (``fail_fast``).

    The request may still have reached the provider: it was in flight when an earlier
    failure stopped the batch.
    """


@dataclass(frozen=True)
class BatchSuccess(Generic[ResponseT]):
    """An answered request of a batch.

    Attributes:
        index: The request's position in the input, from 0.
        id: The request's id: the one given with it, else ``str(index)``.
        response: The answer.
        error: Always None.
    """

    index: int
    id: str
    response: ResponseT
    error: None = None

    @property
    def ok(self) -> Literal[True]:
        """True: the request was answered."""
        return True

    def unwrap(self) -> ResponseT:
        """Return the answer."""
        return self.response


@dataclass(frozen=True)
class BatchFailure:
    """A request of a batch that failed.

    Attributes:
        index: The request's position in the input, from 0.
        id: The request's id: the one given with it, else ``str(index)``.
        response: Always None.
        error: The exception the request raised (a litellm exception for a provider
            failure; :class:`BatchCancelledError` for a request stopped by ``fail_fast``).
    """

    index: int
    id: str
    error: BaseException
    response: None = None

    @property
    def ok(self) -> Literal[False]:
        """False: the request failed."""
        return False

    def unwrap(self) -> NoReturn:
        """Raise the request's error.

        Raises:
            BaseException: :attr:`error`, unchanged.
        """
        raise self.error


BatchResult: TypeAlias = BatchSuccess[ResponseT] | BatchFailure
"""What one request of a batch came to: a :class:`BatchSuccess` or a :class:`BatchFailure`.

Both have ``index``, ``id``, ``response``, ``error``, ``ok`` and ``unwrap()``. The checkers
narrow the union with ``isinstance``, ``match``, ``if r.ok is True:`` or
``if r.error is None:`` (mypy also with ``if r.ok:``). It is a type alias, not a class:
``isinstance`` takes ``BatchSuccess`` or ``BatchFailure``, and results are built by the
runners (or :func:`batch_result`), not by calling ``BatchResult``.
"""


def batch_result(
    index: int, identifier: str, response: ResponseT | None, error: BaseException | None
) -> BatchResult[ResponseT]:
    """Build the result of request ``index``: a failure when ``error`` is set."""
    if error is not None:
        return BatchFailure(index, identifier, error)
    return BatchSuccess(index, identifier, cast("ResponseT", response))
