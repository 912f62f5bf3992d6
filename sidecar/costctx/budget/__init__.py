"""Runtime budgets: a check before the model call, counted from the priced spans.

The `budget` processor commits each priced span's actual cost to the same counters the
check reads (keyed by the envelope: workflow, tenant and feature windows), replacing the
reservation the check made, and serves the BudgetService on the sidecar's ports.
"""
