"""Domain errors of the operations. They say what went wrong in the relay's terms, not in HTTP's:
each view turns them into its own answer (the API in relay/api/errors.py, the console in
relay/console/pages.py)."""

from __future__ import annotations

from pydantic import ValidationError


class OpError(Exception):
    """Something the caller asked for cannot be done; nothing was changed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(OpError):
    """No such thing in this tenant (another tenant's ids look exactly the same)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"no such {what}")
        self.what = what


class Conflict(OpError):
    """The request is well formed but the thing is in the wrong state for it."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


class Invalid(OpError):
    """One field of the input is wrong; `message` starts with the field's name."""

    def __init__(self, field: str | None, message: str, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.field = field
        self.code = code


class StoreFull(OpError):
    """Redis is above RELAY_MEMORY_THRESHOLD of its maxmemory: no new work is taken until the
    workers' expiry brings it down (relay/store/memory_guard.py)."""

    retry_after = 30

    def __init__(self) -> None:
        super().__init__("the relay's store is nearly full; try again later")


def invalid_from(exc: ValidationError, prefix: str = "") -> Invalid:
    """The first problem pydantic found, named by its field (`prefix` places a nested model)."""
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first.get("loc", ()) if p != "__root__")
    field = f"{prefix}{loc}" if loc else (prefix.rstrip(".") or None)
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return Invalid(field, f"{field}: {message}" if field else message)


class QuotaExceeded(OpError):
    """The tenant is at one of its limits; `limit` names the setting (RELAY_MAX_ACTIVE_RUNS)."""

    def __init__(self, limit: str, value: int, what: str) -> None:
        super().__init__(f"quota exceeded: at most {value} {what} per tenant ({limit})")
        self.limit = limit
        self.value = value
