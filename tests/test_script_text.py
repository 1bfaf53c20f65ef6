"""How a script's text is put together (relay/store/scripts.py): the includes' helpers it never
calls are left out, since a script runs its whole text, every definition in it, at each call;
everything it does call stays, however it is reached."""

from __future__ import annotations

from relay.store.scripts import LUA, SOURCES, _blocks, _expand, _shake

TEXT = """--[[
  A header naming unused() and helper(), which is no use of either.
]]
local LIMIT = 3
local function unused(a)
  return a
end
local function helper(a,
    b)
  if a then
    return b
  else
    return LIMIT
  end
end
local function used(x) return helper(x, 1) end
local CALLS = {}
-- a comment naming CALLS
return used(ARGV[1])
"""


def test_a_script_keeps_what_it_calls_and_drops_the_rest() -> None:
    shaken = _shake(TEXT)
    assert "local function unused" not in shaken
    assert "local CALLS" not in shaken  # named only in a comment
    # used() directly, helper() through it, LIMIT through helper(): all kept, whole.
    assert "local function used(x)" in shaken
    assert (
        "local function helper(a,\n    b)\n  if a then" in shaken
        and "    return LIMIT\n  end\nend\n" in shaken
    )
    assert "local LIMIT = 3" in shaken
    assert shaken.startswith("--[[") and shaken.endswith("return used(ARGV[1])\n")


def test_every_script_is_cut_into_statements_without_losing_a_character() -> None:
    for path in LUA.glob("*.lua"):
        text = _expand(path.read_text(), set())
        assert "".join(_blocks(text)) == text, path.stem


def test_no_loaded_script_defines_a_helper_it_never_uses() -> None:
    for name, text in SOURCES.items():
        assert _shake(text) == text, name
