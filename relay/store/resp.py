"""The connection every relay client talks through: redis-py's asyncio connection, with commands
packed into RESP by hiredis (C) instead of redis-py's Python packer.

redis-py's synchronous client already packs with hiredis when it is installed; its asyncio client
does not, and a delivery's scripts carry some twenty keys and arguments each, so packing was
about 7 % of a worker's CPU in bench/delivery.py (py-spy; issue 27). hiredis writes the same
bytes: str as UTF-8, int and float as redis-py's encoder writes them (repr). Anything it does not
take (a bool, None, a bytearray) goes to redis-py's own packer, which raises its usual DataError
or packs it as before; and a command name of several words ("SCRIPT LOAD") is split first, as
redis-py does.
"""

from __future__ import annotations

from typing import Any

from hiredis import pack_command as _pack
from redis.asyncio.connection import Connection


class PackedConnection(Connection):
    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        if isinstance(first, str) and " " in first:
            args = (*first.split(), *args[1:])
        try:
            return [_pack(args)]
        except TypeError:
            return super().pack_command(*args)
