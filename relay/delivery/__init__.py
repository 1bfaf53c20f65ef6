"""Delivery: what a subscriber receives and how it is sent.

Owns the webhook bodies and their schemas (`events`, `webhook_schemas`), recording a transition
with the deliveries it causes (`recorder`), the Standard Webhooks signature (`signing`), the
subscription's extra headers and rate limit (`sub_headers`, `rate_limit`), the retry policy
(`retry`), the outbound HTTP client and its SSRF guard (`http_client`, `ssrf`), and the pull log
(`pull`). The delivery job itself is `workers/deliver.py`.

May import: relay.store, relay.tenancy, and the foundation (relay.config, ids, logging, metrics,
secret_box). Never relay.vendors, relay.ops or a view.
"""
