"""misync: keeps the MIS directory in line with WorkSource Policy 1021.

Data flows one way: feeds -> model -> policy -> reconcile (plan) -> targets (apply)
-> state (journal) and audit (hash-chained trail). The middle (model, policy,
reconcile) does no I/O; feeds, targets, state and audit are the adapters.
"""

__version__ = "0.5.0"
