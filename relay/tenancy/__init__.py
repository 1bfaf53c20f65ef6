"""Tenancy: what belongs to a tenant beyond its runs and subscriptions.

Owns the quotas (`quotas`), usage counts per day (`usage`), notices the tenant must read
(`notices`) and API keys made at run time (`apikeys`).

May import: relay.store and the foundation only.
"""
