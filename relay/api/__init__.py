"""The Starlette ingress: authenticates, validates, records, enqueues, answers fast."""
