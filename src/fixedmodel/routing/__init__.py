"""Routing: fallbacks across models, load balancing across deployments, spending budgets."""

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
