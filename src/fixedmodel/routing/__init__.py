"""Routing: fallbacks across models, load balancing across deployments, spending budgets."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fixedmodel._lazy import first_use

if TYPE_CHECKING:
    from fixedmodel.routing.budget import Budget as Budget
    from fixedmodel.routing.budget import BudgetStatus as BudgetStatus
    from fixedmodel.routing.budget import budget_pacing as budget_pacing
    from fixedmodel.routing.budget import with_budget as with_budget
    from fixedmodel.routing.fallbacks import FallbackPolicy as FallbackPolicy
    from fixedmodel.routing.fallbacks import fallback_causes as fallback_causes
    from fixedmodel.routing.fallbacks import is_fallback_worthy as is_fallback_worthy
    from fixedmodel.routing.fallbacks import with_fallbacks as with_fallbacks
    from fixedmodel.routing.load_balancing import CooldownPolicy as CooldownPolicy
    from fixedmodel.routing.load_balancing import Strategy as Strategy
    from fixedmodel.routing.load_balancing import with_load_balancing as with_load_balancing

__all__ = [
    "Budget",
    "BudgetStatus",
    "CooldownPolicy",
    "FallbackPolicy",
    "Strategy",
    "budget_pacing",
    "fallback_causes",
    "is_fallback_worthy",
    "with_budget",
    "with_fallbacks",
    "with_load_balancing",
]

# Where each name lives, imported on first use (see fixedmodel._lazy); a test keeps it
# equal to the imports above.
_HOME_OF: dict[str, str] = {
    "Budget": "fixedmodel.routing.budget",
    "BudgetStatus": "fixedmodel.routing.budget",
    "CooldownPolicy": "fixedmodel.routing.load_balancing",
    "FallbackPolicy": "fixedmodel.routing.fallbacks",
    "Strategy": "fixedmodel.routing.load_balancing",
    "budget_pacing": "fixedmodel.routing.budget",
    "fallback_causes": "fixedmodel.routing.fallbacks",
    "is_fallback_worthy": "fixedmodel.routing.fallbacks",
    "with_budget": "fixedmodel.routing.budget",
    "with_fallbacks": "fixedmodel.routing.fallbacks",
    "with_load_balancing": "fixedmodel.routing.load_balancing",
}

if not TYPE_CHECKING:  # Hidden from checkers, which would accept any misspelled name.
    __getattr__, __dir__ = first_use("fixedmodel.routing", _HOME_OF, globals())
