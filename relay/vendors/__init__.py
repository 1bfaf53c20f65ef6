"""Vendors: talking to Citedy and Autoposting.

Owns the provider clients (`base` is the interface a vendor implements; `citedy`,
`citedy_models`, `autoposting`; `registry` lists them: adding a vendor is one module and one
line there), the tenants' own credentials (`connections`), a credential refused (`auth`), the
shared request budget per credential (`budget`) and the polling policy (`polling`). The start,
poll and watch jobs are `workers/start.py`, `workers/poll.py`, `workers/watch.py`.

May import: relay.delivery (the outbound client, the recorder), relay.tenancy, relay.store and
the foundation. Never relay.ops or a view.
"""
