"""Citedy's CreateWarmLeadRunRequest, validated exactly as the vendor's contract states.

The relay's ingress and the Citedy simulator share this model so that a request the relay accepts
is one the vendor accepts too: a 400 found at ingress is cheap, one found by a worker minutes later
is a `run.start_failed` webhook the customer has to chase. Messages name the field and never echo
the offending value, because callers can send megabytes and the message ends up in responses.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)

Icp = Literal["seo-geo-agency", "content-led-saas", "vertical-saas"]
BuyerRole = Annotated[str, StringConstraints(min_length=1, max_length=80)]

#: The vendor's documented defaults, applied when a field is omitted.
DEFAULTS: dict[str, Any] = {
    "icp": "content-led-saas",
    "buyerRoles": [],
    "maxContacts": 3,
    "drafts": 3,
    "freshnessDays": 90,
}

#: Hosts whose pages are people's or brands' profiles, never a company's own site.
SOCIAL_HOSTS = (
    "linkedin.com",
    "twitter.com",
    "x.com",
    "facebook.com",
    "instagram.com",
    "youtube.com",
    "tiktok.com",
    "threads.net",
)

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_AUTHORITY = re.compile(r"^([^/?#]*)(.*)$", re.DOTALL)
_MAX_NAME_ECHO = 64


def _split_url(text: str) -> tuple[str, str]:
    """Separate the authority from whatever follows it, after checking the scheme."""
    if "://" in text:
        scheme, _, rest = text.partition("://")
        if scheme.lower() not in ("http", "https"):
            raise ValueError("domain must be a bare domain or an http(s) URL")
    else:
        rest = text
    match = _AUTHORITY.match(rest)
    assert match is not None  # the pattern matches every string
    return match.group(1), match.group(2)


def _check_remainder(remainder: str) -> None:
    """Only the site root identifies a company; a path usually means a profile or an article."""
    path = re.split(r"[?#]", remainder, maxsplit=1)[0]
    if path not in ("", "/"):
        raise ValueError("domain must not include a path; send the bare domain, e.g. example.com")
    if "?" in remainder:
        raise ValueError("domain must not include a query string")
    if "#" in remainder:
        raise ValueError("domain must not include a fragment")


def _host_of(authority: str) -> str:
    if "@" in authority:
        raise ValueError("domain must not include user credentials")
    if authority.startswith("["):
        raise ValueError("domain must be a domain name, not an IP address")
    host, sep, port = authority.rpartition(":") if ":" in authority else (authority, "", "")
    if sep and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise ValueError("domain has an invalid port")
    if host.endswith("."):
        host = host[:-1]
    if not host:
        raise ValueError("domain must include a host name, e.g. example.com")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError("domain is not a valid internationalised host name") from None
    return host.lower()


def normalize_domain(domain: str) -> str:
    """The company's host name as the vendor keys it: lowercase, no scheme, port, dot or `www.`.

    Raises ValueError with a message that names `domain` and never repeats the input.
    """
    if not isinstance(domain, str):
        raise ValueError("domain must be a string")
    text = domain.strip()
    if not text:
        raise ValueError("domain must not be empty")
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise ValueError("domain must not contain spaces or control characters")
    authority, remainder = _split_url(text)
    _check_remainder(remainder)
    host = _host_of(authority)
    if host.startswith("www."):
        host = host[4:]
    if len(host) > 253:
        raise ValueError("domain host name is longer than 253 characters")
    labels = host.split(".")
    if len(labels) < 2:
        raise ValueError("domain must include a top-level domain, e.g. example.com")
    if not all(_LABEL.match(label) for label in labels):
        raise ValueError(
            "domain is not a valid host name: use letters, digits, hyphens and dots, "
            "with labels of 1-63 characters"
        )
    if labels[-1].isdigit():
        raise ValueError("domain must be a domain name, not an IP address")
    for social in SOCIAL_HOSTS:
        if host == social or host.endswith("." + social):
            raise ValueError(
                f"domain must be a company's own domain, not a social profile URL ({social})"
            )
    return host


class CreateWarmLeadRunRequest(BaseModel):
    """The vendor's request body; strict so `true` or `2.0` never pass as an integer."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    domain: Annotated[str, StringConstraints(min_length=1, max_length=253)]
    icp: Icp | None = None
    buyerRoles: Annotated[list[BuyerRole], Field(max_length=6)] | None = None
    maxContacts: Annotated[int, Field(ge=1, le=3)] | None = None
    drafts: Annotated[int, Field(ge=1, le=3)] | None = None
    freshnessDays: Annotated[int, Field(ge=7, le=365)] | None = None
    idempotencyKey: Annotated[str, StringConstraints(min_length=8, max_length=128)] | None = None

    @field_validator(
        "icp",
        "buyerRoles",
        "maxContacts",
        "drafts",
        "freshnessDays",
        "idempotencyKey",
        mode="before",
    )
    @classmethod
    def _reject_null(cls, value: Any, info: ValidationInfo) -> Any:
        """The contract types these fields without `null`; omitting one is how to get a default."""
        if value is None:
            raise ValueError(f"{info.field_name} must not be null; omit it to use the default")
        return value

    @field_validator("domain")
    @classmethod
    def _domain_normalizes(cls, value: str) -> str:
        normalize_domain(value)
        return value

    @property
    def normalized_domain(self) -> str:
        return normalize_domain(self.domain)

    def effective(self) -> dict[str, Any]:
        """The request with defaults filled in and the domain normalized: what decides the run,
        so two bodies that mean the same thing compare equal for idempotency."""
        given = self.model_dump(exclude_none=True, exclude={"domain", "idempotencyKey"})
        return {**DEFAULTS, **given, "domain": self.normalized_domain}


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = part if len(part) <= _MAX_NAME_ECHO else part[:_MAX_NAME_ECHO] + "..."
            out += f".{name}" if out else name
    return out or "body"


_JSON_TYPES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}


def _phrase(error: Any) -> str:
    kind = error["type"]
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        allowed = ", ".join(CreateWarmLeadRunRequest.model_fields)
        return f"is not a known field (allowed: {allowed})"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return "must be a JSON object"
    if kind in ("int_type", "string_type", "list_type"):
        wanted = {"int_type": "an integer", "string_type": "a string", "list_type": "an array"}
        got = _JSON_TYPES.get(
            type(error.get("input")), "null" if error.get("input") is None else ""
        )
        return f"must be {wanted[kind]}" + (f", not {got}" if got else "")
    message = str(error["msg"])
    if kind == "value_error":
        return message.removeprefix("Value error, ")
    for prefix in ("Input should", "String should", "List should", "Value should"):
        if message.startswith(prefix):
            rest = message[len(prefix) :].replace(" after validation", "")
            return "must" + rest
    return message


def describe_validation_error(exc: ValidationError) -> tuple[str, str]:
    """`(field, message)` for a 400 body: the first problem, named, plus how many more there are.

    Pydantic's own text repeats the input value; this never does.
    """
    errors = exc.errors(include_url=False)
    if not errors:
        return "body", "request body is invalid"
    first = errors[0]
    field = _field_path(tuple(first["loc"]))
    phrase = _phrase(first)
    # Our own value errors already name the field; pydantic's built-in ones do not.
    message = phrase if first["type"] == "value_error" else f"{field} {phrase}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return field, message
