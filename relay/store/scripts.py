"""The Lua scripts, one file each under `lua/`, loaded once at import.

Each script is the whole of one decision, so a SIGKILL lands either before it or after it, never
in the middle: that is how "nothing lost" and "one event per transition" hold without locks.
Every file opens with a comment listing its KEYS and ARGV and what it returns, as BullMQ keeps
its `src/commands/*.lua`.

Loading stitches three things in, so the files stay readable and a key's name is spelled in one
place only (`relay/store/keys.py`):

- `--- @include "name"` is replaced by `lua/includes/name.lua` (each include once per script,
  where it is first named; includes may include others);
- every `key_<name>(...)` and `KEY_<NAME>` the text uses is defined in front of it, generated
  from the function or constant of that name in keys.py (a format changed there changes here);
- `${NAME}` is replaced by a constant of `CONSTANTS`.

Keys that are neither in KEYS nor passed in as a prefix are built by those generated functions
(the data model hangs off a run or subscription id); that is fine on one Redis/Valkey or a
Sentinel primary, the supported deployments. docs/scaling.md says what a Redis Cluster would need.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from relay.store import keys

LUA = Path(__file__).with_name("lua")

#: A run's retention when its hash does not say (RELAY_RETENTION's default), seconds.
DEFAULT_RETENTION = 30 * 86400
#: How long the run hash outlives its data keys, so a late sweep still knows what to unindex.
GRACE_MS = 24 * 3600 * 1000
#: The value of an agent run's upstream key once the run is gone (a watch must not track it again).
TOMB = "tomb"
#: The longest an idle pump naps waiting for a nudge (workers/pump.py, lua/includes/nudge.lua):
#: a member scheduled sooner than this from now nudges the due set, so a napping pump wakes and
#: naps again until exactly its time. Below the workers' socket timeout (5 s).
NAP = 3.0
CONSTANTS = {
    "DEFAULT_RETENTION": DEFAULT_RETENTION,
    "GRACE_MS": GRACE_MS,
    "TOMB": TOMB,
    "NAP": NAP,
}

#: Scripts that only read: the crash-point harness does not count them as writes.
READ_ONLY = frozenset({"lane_head"})

_INCLUDE = re.compile(r'^--- @include "([a-z_]+)"[ \t]*$', re.MULTILINE)
_KEY_FN = re.compile(r"\bkey_([a-z_]+)\(")
_KEY_CONST = re.compile(r"\bKEY_([A-Z_]+)\b")
_CONST = re.compile(r"\$\{([A-Z_]+)\}")
_ARG = re.compile("\x00([0-9])\x00")


def _lua_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _key_function(name: str) -> str:
    """`key_<name>` in Lua: keys.<name> called with a marker per parameter, its result cut at
    the markers into literal parts and parameters; checked against a call with sample values."""
    fn = getattr(keys, name, None)
    if not callable(fn):
        raise LookupError(f"key_{name}: keys.py has no function {name}")
    params = list(inspect.signature(fn).parameters)
    built = fn(*(f"\x00{i}\x00" for i in range(len(params))))
    parts: list[str] = []
    for i, piece in enumerate(_ARG.split(built)):
        if i % 2:
            parts.append(f"a{piece}")
        elif piece:
            parts.append(_lua_string(piece))
    plain = [f"s{i}x" for i in range(len(params))]
    real = [value for value in vars(keys).values() if isinstance(value, str)]
    for samples in (plain, *([value] * len(params) for value in real)):
        rebuilt = "".join(
            samples[int(p[1:])] if p.startswith("a") else p[1:-1].replace("\\'", "'") for p in parts
        )
        if rebuilt != fn(*samples):
            raise ValueError(f"keys.{name} does not build its key by concatenation only")
    args = ", ".join(f"a{i}" for i in range(len(params)))
    return f"local function key_{name}({args}) return {' .. '.join(parts)} end"


def _key_constant(name: str) -> str:
    value = getattr(keys, name, None)
    if not isinstance(value, str):
        raise LookupError(f"KEY_{name}: keys.py has no constant {name}")
    return f"local KEY_{name} = {_lua_string(value)}"


def _expand(text: str, seen: set[str]) -> str:
    def include(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in seen:
            return ""
        seen.add(name)
        return _expand((LUA / "includes" / f"{name}.lua").read_text(), seen)

    return _INCLUDE.sub(include, text)


_DEFINES = re.compile(r"^local (?:function )?([A-Za-z_][A-Za-z0-9_]*)\b(?!\s*,)")
_CONTINUES = ("end", "else", "elseif", "until", "}", ")", "]]")
_COMMENT = re.compile(r"--\[\[.*?\]\]|--[^\n]*", re.DOTALL)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _blocks(text: str) -> list[str]:
    """`text` cut into its top-level statements: a statement starts at column 0, and goes on
    through indented lines and the `end`s (and the like) that close it at column 0; a block
    comment is one statement."""
    blocks: list[str] = []
    in_comment = False
    for line in text.splitlines(keepends=True):
        starts = bool(line.strip()) and not line[0].isspace() and not line.startswith(_CONTINUES)
        if in_comment:
            blocks[-1] += line
            in_comment = "]]" not in line
        elif starts or not blocks:
            blocks.append(line)
            in_comment = line.startswith("--[[") and "]]" not in line
        else:
            blocks[-1] += line
    return blocks


def _shake(text: str) -> str:
    """`text` without the top-level `local` definitions it never uses (its code, comments left
    out, names them neither directly nor through a definition it uses).

    A script runs its whole text at every call, so each helper an include brings is built
    again each time: delivered.lua defined 36 functions per call, 8 µs of Valkey's CPU of its
    41 (bench/delivery.py), to call a handful. A definition kept or dropped changes nothing
    else: an unused local is never read."""
    blocks = _blocks(text)
    defined: dict[int, str] = {}
    for i, block in enumerate(blocks):
        match = _DEFINES.match(block)
        if match:
            defined[i] = match.group(1)
    kept = {i for i in range(len(blocks)) if i not in defined}
    names: set[str] = set()
    todo = list(kept)
    while todo:
        names.update(_NAME.findall(_COMMENT.sub(" ", blocks[todo.pop()])))
        for i, name in defined.items():
            if i not in kept and name in names:
                kept.add(i)
                todo.append(i)
    return "".join(block for i, block in enumerate(blocks) if i in kept)


def load(name: str) -> str:
    """The full text of script `name` as Redis receives it."""
    body = _shake(_expand((LUA / f"{name}.lua").read_text(), set()))
    body = _CONST.sub(lambda m: str(CONSTANTS[m.group(1)]), body)
    defs = [_key_constant(c) for c in sorted(set(_KEY_CONST.findall(body)))]
    defs += [_key_function(f) for f in sorted(set(_KEY_FN.findall(body)))]
    return "\n".join(defs) + "\n" + body


#: Every script by name (its file's stem), ready to register.
SOURCES: dict[str, str] = {path.stem: load(path.stem) for path in sorted(LUA.glob("*.lua"))}
