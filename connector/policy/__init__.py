"""Policy 1021: (records, instant) -> decision with every reason and its clause. Pure."""

from connector.policy.clauses import CLAUSES
from connector.policy.engine import PolicyIndex, evaluate, evaluate_all
from connector.policy.rules import PolicyRules

__all__ = ["CLAUSES", "PolicyIndex", "PolicyRules", "evaluate", "evaluate_all"]
