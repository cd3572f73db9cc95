"""litellm's exception classes, reachable without importing litellm yourself.

They are fixedmodel's error contract: provider failures propagate as these classes, unchanged.
Each name is resolved from ``litellm.exceptions`` on first access, through fixedmodel's lazy
import, so ``LITELLM_LOCAL_MODEL_COST_MAP`` is set before litellm loads (importing litellm
yourself first skips that, and litellm then downloads its price list at import)::

    from fixedmodel import errors

    try:
        response = await chat(messages=messages)
    except errors.RateLimitError:
        ...

The hierarchy is litellm's: e.g. ``ContextWindowExceededError`` is a ``BadRequestError``,
and most classes also subclass the openai-python exception of the same name.

One class is fixedmodel's own: :class:`WorkerError`, which stands in for an exception that
could not travel back from a worker process (see the Workers page).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fixedmodel._pickling import WorkerError as WorkerError

if TYPE_CHECKING:
    from litellm.exceptions import APIConnectionError as APIConnectionError
    from litellm.exceptions import APIError as APIError
    from litellm.exceptions import APIResponseValidationError as APIResponseValidationError
    from litellm.exceptions import AuthenticationError as AuthenticationError
    from litellm.exceptions import BadGatewayError as BadGatewayError
    from litellm.exceptions import BadRequestError as BadRequestError
    from litellm.exceptions import BudgetExceededError as BudgetExceededError
    from litellm.exceptions import ContentPolicyViolationError as ContentPolicyViolationError
    from litellm.exceptions import ContextWindowExceededError as ContextWindowExceededError
    from litellm.exceptions import InternalServerError as InternalServerError
    from litellm.exceptions import JSONSchemaValidationError as JSONSchemaValidationError
    from litellm.exceptions import NotFoundError as NotFoundError
    from litellm.exceptions import OpenAIError as OpenAIError
    from litellm.exceptions import PermissionDeniedError as PermissionDeniedError
    from litellm.exceptions import RateLimitError as RateLimitError
    from litellm.exceptions import ServiceUnavailableError as ServiceUnavailableError
    from litellm.exceptions import Timeout as Timeout
    from litellm.exceptions import UnprocessableEntityError as UnprocessableEntityError
    from litellm.exceptions import UnsupportedParamsError as UnsupportedParamsError

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "AuthenticationError",
    "BadGatewayError",
    "BadRequestError",
    "BudgetExceededError",
    "ContentPolicyViolationError",
    "ContextWindowExceededError",
    "InternalServerError",
    "JSONSchemaValidationError",
    "NotFoundError",
    "OpenAIError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServiceUnavailableError",
    "Timeout",
    "UnprocessableEntityError",
    "UnsupportedParamsError",
]
# ``__all__`` lists litellm's classes, resolved lazily below; WorkerError is imported above
# from where it is made (it stands in for an exception that cannot be pickled).


if not TYPE_CHECKING:
    # Hidden from checkers: a module __getattr__ would make them accept any misspelled name.

    def __getattr__(name: str) -> object:
        # Resolved on first use so that ``import fixedmodel`` stays cheap; litellm_module() sets
        # the offline cost-map default before litellm is imported.
        if name in __all__:
            import importlib

            from fixedmodel._litellm import litellm_module

            litellm_module()
            exceptions = importlib.import_module("litellm.exceptions")
            try:
                value: object = getattr(exceptions, name)
            except AttributeError:
                msg = f"the installed litellm has no exception class {name!r}"
                raise AttributeError(msg) from None
            globals()[name] = value
            return value
        msg = f"module 'fixedmodel.errors' has no attribute {name!r}"
        raise AttributeError(msg)
