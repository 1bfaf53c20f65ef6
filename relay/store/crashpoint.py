"""Crash points, for the crash-point tests: die right after the N-th Redis write lands.

The injection is at the Redis client seam, so it needs no knowledge of any code path: a
connection class counts the replies to write commands (a MULTI/EXEC counts once, at its EXEC; a
script counts unless it is one of the read-only ones, or a claim that claimed nothing) and, right
after the N-th, ends the process (`os._exit(137)`, as a SIGKILL would: no `finally`, no flush) or,
in-process, raises `CrashPoint` and refuses every later command of that client, so whatever the
"dead" code still tries never reaches Redis.

Off unless asked for: `RELAY_CRASH_AFTER_WRITES=N` in a process's environment (set only by tests)
makes `relay.store.connection.connect` use it; tests running jobs in-process build a counter and
pass
`connection_class(counter)` themselves. Not for production use.
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.connection import Connection

from relay.store import scripts

ENV = "RELAY_CRASH_AFTER_WRITES"

WRITE_COMMANDS = frozenset(
    """SET SETNX SETEX PSETEX GETSET GETDEL GETEX DEL UNLINK EXPIRE PEXPIRE EXPIREAT PEXPIREAT
    PERSIST HSET HSETNX HMSET HDEL HINCRBY HINCRBYFLOAT INCR INCRBY DECR DECRBY INCRBYFLOAT
    APPEND LPUSH RPUSH LPUSHX RPUSHX LPOP RPOP LTRIM LREM LSET LINSERT LMOVE RPOPLPUSH SADD SREM
    SPOP SMOVE ZADD ZREM ZINCRBY ZREMRANGEBYSCORE ZREMRANGEBYRANK ZPOPMIN ZPOPMAX XADD XTRIM
    RENAME COPY FLUSHDB FLUSHALL EVAL EVALSHA FCALL""".split()
)


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 (Redis names scripts so)


READ_ONLY_SHAS = frozenset(_sha(scripts.SOURCES[name]) for name in scripts.READ_ONLY)
CLAIM_SHA = _sha(scripts.SOURCES["claim"])


class CrashPoint(BaseException):
    """The in-process stand-in for the process dying: a BaseException, so no `except
    Exception` in the code under test mistakes it for an error it can handle."""


@dataclass
class Counter:
    """Counts landed writes; `after` = the write after which to die (0: never)."""

    after: int = 0
    exit_process: bool = False
    #: Die *before* the `after`-th write is sent instead: the same Redis state as after the
    #: write before it, but past whatever the process did in between (a vendor call, a POST).
    before: bool = False
    writes: int = 0
    packed: int = 0
    dead: bool = False
    log: list[str] = field(default_factory=list)

    def landed(self, name: str) -> None:
        self.writes += 1
        self.log.append(name)
        if self.after and not self.before and self.writes >= self.after:
            self.die(f"crashed after write {self.writes} ({name})")

    def sending(self, name: str) -> None:
        self.packed += 1
        if self.after and self.before and self.packed >= self.after:
            self.die(f"crashed before write {self.packed} ({name})")

    def die(self, why: str) -> None:
        if self.exit_process:
            os._exit(137)
        self.dead = True
        raise CrashPoint(why)


def _name(args: tuple[Any, ...]) -> str:
    head = args[0]
    text = head.decode() if isinstance(head, bytes) else str(head)
    return text.split(" ", 1)[0].upper()


def _script_sha(name: str, args: tuple[Any, ...]) -> str:
    body = args[1].decode() if isinstance(args[1], bytes) else str(args[1])
    return body if name == "EVALSHA" else _sha(body)


def connection_class(counter: Counter) -> type[Connection]:
    """A redis-py asyncio Connection class bound to `counter`."""

    class CrashConnection(Connection):
        _counter = counter

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            # What each pending reply answers: (command, kind); kinds: read, write, claim.
            self._sent: deque[tuple[str, str]] = deque()
            self._multi: list[str] | None = None
            self._packing_multi: list[str] | None = None

        async def on_connect(self) -> None:
            self._sent.clear()
            self._multi = None
            await super().on_connect()

        def pack_command(self, *args: Any) -> list[bytes]:
            if self._counter.dead:
                raise CrashPoint("the process is gone")
            name = _name(args)
            kind = "write" if name in WRITE_COMMANDS else "read"
            if name in ("EVAL", "EVALSHA"):
                sha = _script_sha(name, args)
                kind = "read" if sha in READ_ONLY_SHAS else "claim" if sha == CLAIM_SHA else kind
            if name == "MULTI":
                self._packing_multi = []
            elif name == "EXEC":
                queued, self._packing_multi = self._packing_multi or [], None
                if "write" in queued or "claim" in queued:
                    self._counter.sending("MULTI/EXEC")
            elif self._packing_multi is not None:
                self._packing_multi.append(kind)
            elif kind != "read":
                # (a claim counts as a write here: whether it claims is known only after)
                self._counter.sending(name)
            self._sent.append((name, kind))
            return super().pack_command(*args)

        async def read_response(self, *args: Any, **kwargs: Any) -> Any:
            try:
                response = await super().read_response(*args, **kwargs)
            except Exception:
                if self._sent:
                    self._sent.popleft()
                raise
            if not self._sent:
                return response
            name, kind = self._sent.popleft()
            if name == "MULTI":
                self._multi = []
            elif name == "EXEC":
                queued, self._multi = self._multi or [], None
                if "write" in queued or "claim" in queued:
                    self._counter.landed("MULTI/EXEC")
            elif self._multi is not None:
                self._multi.append(kind)
            elif kind == "write":
                self._counter.landed(name)
            elif kind == "claim" and isinstance(response, list) and len(response) > 2:
                self._counter.landed("CLAIM")
            return response

    return CrashConnection


def from_env() -> Counter | None:
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return None
    return Counter(after=int(raw), exit_process=True)
