"""The layout's rules, read from the code (no server needed): imports run one way (views → ops
→ domains → store → foundation), Lua lives only in relay/store/lua/ with a KEYS/ARGV header and
no key spelled inside it, and no module grows past 450 lines."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from relay.store import keys, scripts
from relay.store.client import Scripts

ROOT = Path(__file__).resolve().parents[1]
LUA = ROOT / "relay" / "store" / "lua"

#: Each package or module's layer; an import may only reach its own layer or one below. Within the
#: domain layer, `DOMAIN_ORDER` says which domain may use which (no cycles between domains).
LAYERS: dict[str, int] = {
    "relay.config": 0,
    "relay.collector": 0,
    "relay.event_loop": 0,
    "relay.ids": 0,
    "relay.logging": 0,
    "relay.metrics": 0,
    "relay.secret_box": 0,
    "relay.tracing": 0,
    "relay.store": 1,
    "relay.tenancy": 2,
    "relay.delivery": 2,
    "relay.vendors": 2,
    "relay.ops": 3,
    "relay.api": 4,
    "relay.console": 4,
    "workers": 4,
    "relay.cli": 5,
    "relay.devtools": 5,
}
DOMAIN_ORDER = ["relay.tenancy", "relay.delivery", "relay.vendors"]


def owner(module: str) -> str | None:
    best = None
    for name in LAYERS:
        if (module == name or module.startswith(name + ".")) and (
            best is None or len(name) > len(best)
        ):
            best = name
    return best


def modules() -> list[tuple[str, Path]]:
    found = []
    for base in ("relay", "workers"):
        for path in sorted((ROOT / base).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            if parts != ["relay"]:  # the bare package: an empty __init__
                found.append((".".join(parts), path))
    return found


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every module an import names, at any depth of the file (lazy imports count too)."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return out


def violations() -> list[str]:
    found = []
    for name, path in modules():
        mine = owner(name)
        assert mine is not None, f"{name}: not in a layer of LAYERS (add its package there)"
        for line, target in imports_of(path):
            theirs = owner(target)
            if theirs is None or theirs == mine:
                continue
            up = LAYERS[theirs] > LAYERS[mine]
            sideways = (
                LAYERS[theirs] == LAYERS[mine] == 2
                and DOMAIN_ORDER.index(theirs) > DOMAIN_ORDER.index(mine)
            )
            if up or sideways:
                found.append(f"{path.relative_to(ROOT)}:{line} {mine} imports {target}")
    return sorted(set(found))


def test_imports_run_one_way() -> None:
    assert violations() == []


def test_the_check_sees_an_arrow_that_runs_back_up(tmp_path: Path) -> None:
    """The rule itself: a store module importing an operation would be caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("from relay.ops import runs\nimport relay.api.app\n")
    targets = [owner(t) for _, t in imports_of(bad)]
    assert "relay.ops" in targets and "relay.api" in targets
    assert LAYERS["relay.ops"] > LAYERS["relay.store"]


def test_no_module_is_over_450_lines() -> None:
    long = [
        f"{path.relative_to(ROOT)} ({n} lines)"
        for _, path in modules()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > 450
    ]
    assert long == []


def lua_files() -> list[Path]:
    return sorted(LUA.rglob("*.lua"))


def test_lua_lives_only_in_the_store() -> None:
    outside = [
        str(path.relative_to(ROOT))
        for base in ("relay", "workers")
        for path in (ROOT / base).rglob("*")
        if path.suffix in (".py", ".lua")
        and "redis.call" in path.read_text(encoding="utf-8")
        and LUA not in path.parents
    ]
    assert outside == []


@pytest.mark.parametrize("path", lua_files(), ids=lambda p: p.name)
def test_every_script_opens_with_its_contract(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    header = re.match(r"--\[\[(.*?)\]\]", text, re.DOTALL)
    assert header, f"{path.name}: no --[[ ... ]] header"
    if path.parent.name != "includes":
        for word in ("KEYS", "ARGV", "Returns"):
            assert word in header.group(1), f"{path.name}: its header does not say its {word}"


@pytest.mark.parametrize("path", lua_files(), ids=lambda p: p.name)
def test_no_script_spells_a_key(path: Path) -> None:
    code = "\n".join(
        line for line in path.read_text(encoding="utf-8").splitlines() if "--" not in line[:4]
    )
    assert keys.P not in code, f"{path.name} spells a key prefix; use key_<name>() from keys.py"


def test_every_script_is_bound_and_every_key_function_is_generated_from_keys_py() -> None:
    stems = {p.stem for p in LUA.glob("*.lua")}
    assert set(scripts.SOURCES) == stems
    assert set(Scripts.__annotations__) == stems  # one typed attribute per script
    record = scripts.SOURCES["record_event"]
    assert f"return '{keys.P}lane:' .. a0 .. ':' .. a1 end" in record
    assert keys.lane("s", "r") == f"{keys.P}lane:s:r"


def test_a_key_function_that_is_not_a_plain_concatenation_is_refused() -> None:
    with pytest.raises(ValueError, match="concatenation"):
        scripts._key_function("poison")  # it strips a prefix from its argument
