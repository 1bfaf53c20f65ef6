"""Code blocks of the project's markdown, for the tests that run the docs' own commands.

A block may be named by an HTML comment on the line just before its fence
(`<!-- test: NAME -->`): invisible when rendered, so the reader sees the commands as they are run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_FENCE = re.compile(r"^```([A-Za-z0-9_+-]*)\s*$")
_TAG = re.compile(r"^<!--\s*test:\s*([A-Za-z0-9_.-]+)[^>]*-->\s*$")


@dataclass(frozen=True)
class Block:
    lang: str
    text: str
    tag: str | None
    line: int  # 1-based line of the opening fence


def code_blocks(path: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opened = _FENCE.match(lines[i])
        if not opened:
            i += 1
            continue
        tag_match = _TAG.match(lines[i - 1]) if i > 0 else None
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise AssertionError(f"{path}:{start + 1}: a code block is never closed")
        blocks.append(
            Block(
                lang=opened.group(1),
                text="\n".join(body) + "\n",
                tag=tag_match.group(1) if tag_match else None,
                line=start + 1,
            )
        )
        i += 1
    return blocks


def tagged(path: Path, tag: str) -> Block:
    found = [b for b in code_blocks(path) if b.tag == tag]
    assert len(found) == 1, f"{path}: {len(found)} blocks tagged {tag!r}"
    return found[0]
