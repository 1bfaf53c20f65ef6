"""Offset paging of the relay's bounded lists (a subscription's attempt log and dead letters,
the tenant's notices): a page is one LRANGE/ZREVRANGE of `limit` items from `offset`, with the
list's length (LLEN/ZCARD) so a view can say "101-200 of 224" and link newer and older pages.
The cursor is the offset of the next page, at most 9 ASCII digits (as /openapi.json says: Redis
list indexes are signed 64-bit, and int() alone would take "+5", " 5" or other scripts' digits)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from relay.ops.errors import Invalid

T = TypeVar("T")

MAX_LIMIT = 200


@dataclass(frozen=True)
class Page(Generic[T]):
    data: list[T]
    total: int  # items in the whole list now
    offset: int  # of the first item shown
    limit: int

    @property
    def next_cursor(self) -> str | None:
        """The older page's cursor, if there is one."""
        end = self.offset + self.limit
        return str(end) if end < self.total else None

    @property
    def prev_cursor(self) -> str | None:
        """The newer page's cursor, if this is not the first page."""
        return str(max(0, self.offset - self.limit)) if self.offset > 0 else None


def offset_of(raw: str | None, *, empty: bool = True) -> int:
    """A page cursor (an offset); None is the first page, and so is '' where `empty` (the
    console's forms); the API answers an empty cursor with a 400, as every other parameter."""
    if raw is None or (raw == "" and empty):
        return 0
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9):
        raise Invalid("cursor", "cursor: malformed; it is a page offset such as 100")
    return int(raw)


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid("limit", f"limit: must be 1-{MAX_LIMIT}")
    return limit
