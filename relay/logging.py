"""structlog set-up: JSON lines in production, a console renderer in dev, and a redaction
processor so that no API key, vendor key or webhook secret reaches a log line."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from relay import tracing

_SECRET_PATTERNS = [
    re.compile(r"whsec_[A-Za-z0-9+/=_-]+"),
    re.compile(r"citedy_agent_[A-Za-z0-9_-]+"),
    re.compile(r"sk-social-[A-Za-z0-9_-]+"),
    re.compile(r"(?i)(bearer\s+)[^\s\"',]+"),
    re.compile(r"enc:gAAAA[A-Za-z0-9_=-]+"),
]
_SECRET_FIELDS = {"authorization", "x-api-key", "secret", "api_key", "password", "token", "key"}
_extra_secrets: set[str] = set()


def register_secrets(*values: str | None) -> None:
    """Known secret values (configured API keys, vendor keys) are masked wherever they appear."""
    for value in values:
        if value and len(value) >= 8:
            _extra_secrets.add(value)


def redact_text(text: str) -> str:
    for value in _extra_secrets:
        if value in text:
            text = text.replace(value, "[redacted]")
    for pattern in _SECRET_PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + "[redacted]", text)
        else:
            text = pattern.sub("[redacted]", text)
    return text


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {
            k: "[redacted]" if str(k).lower() in _SECRET_FIELDS else _redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    return value


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key.lower() in _SECRET_FIELDS:
            event_dict[key] = "[redacted]"
        else:
            event_dict[key] = _redact(event_dict[key])
    return event_dict


def configure(fmt: str = "json", level: str = "info") -> None:
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        # trace_id/span_id of the current span (tracing on only: relay/tracing.py)
        tracing.log_ids,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(message)s")
