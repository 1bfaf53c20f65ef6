"""The store: all state in Redis/Valkey, and the only code that spells a key or calls a script.

Owns the key names (`keys`), the connection (`connection`) and its crash-point wrapper for the
tests (`crashpoint`), the Lua scripts, one file each under `lua/`, loaded by `scripts` and bound
by `client`, the auto-pipeline (`autopipe`), leases on due sets (`leases`), send slots
(`slots`), the typed accessors (`runs`, `subscriptions`, `lanes`, `snapshots`, `packing`), where a
run's keys die (`lifecycle`), the memory guard (`memory_guard`) and the api's gauges (`gauges`).

May import: the foundation only (relay.config, ids, logging, metrics, secret_box). Never a domain,
relay.ops or a view.
"""
