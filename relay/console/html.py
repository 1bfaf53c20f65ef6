"""Tiny HTML templating with escaping by default: every value substituted into a template is
escaped unless it is already `Safe` (the output of another template)."""

from __future__ import annotations

import html
import string
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any


class Safe(str):
    """Markup that is already escaped."""

    __slots__ = ()


def esc(value: Any) -> Safe:
    if isinstance(value, Safe):
        return value
    return Safe(html.escape("" if value is None else str(value), quote=True))


def render(template: str, **values: Any) -> Safe:
    return Safe(string.Template(template).substitute({k: esc(v) for k, v in values.items()}))


def join(parts: Iterable[Any], sep: str = "") -> Safe:
    return Safe(sep.join(esc(p) for p in parts))


@cache
def template(name: str) -> str:
    return (resources.files("relay.console") / "templates" / name).read_text(encoding="utf-8")


def ts(value: Any) -> str:
    """Unix seconds → '2026-11-25 05:28:05Z' (UTC); '' for nothing."""
    if value in (None, "", 0, "0"):
        return ""
    try:
        moment = datetime.fromtimestamp(float(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return ""
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def badge(text: Any, tone: str | None = None) -> Safe:
    word = "" if text is None else str(text)
    tone = tone or TONES.get(word, "muted")
    return render('<span class="badge $tone">$text</span>', tone=tone, text=word or "-")


TONES = {
    "succeeded": "ok",
    "running": "info",
    "partial": "warn",
    "healthy": "ok",
    "failing": "bad",
    "completed": "ok",
    "enabled": "ok",
    "tracking": "info",
    "starting": "info",
    "pending": "info",
    "retrying": "warn",
    "disabled": "bad",
    "dead": "bad",
    "failed": "bad",
    "start_failed": "bad",
    "tracking_failed": "bad",
    "blocked": "bad",
    "stopped": "muted",
    "joined": "muted",
    "dropped": "muted",
}
