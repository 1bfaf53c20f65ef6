"""The operator console: server-rendered HTML at /console, tenant-scoped by the same API keys."""
