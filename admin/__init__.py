"""Operator tooling: the `segmind-proxy` command (tenants, keys, plans, budgets, usage)."""
