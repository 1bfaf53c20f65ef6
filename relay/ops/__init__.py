"""The operations layer: every action and read the relay offers, once.

One module per resource (`runs`, `subscriptions`, `deliveries`, `watches`, `notices`). Every
operation takes a `Deps` (store, settings, vendor clients), the tenant explicitly, and typed
inputs (`relay.ops.inputs`); it returns plain data or a small result dataclass, and raises the
domain errors of `relay.ops.errors` (never an HTTP error). The JSON API (relay/api/) and the
console (relay/console/) are views: they parse a request, call one operation and render its
result, so a change to how, say, recover works is made in exactly one place
(`relay.ops.deliveries.recover`)."""
