"""The Citedy simulator's own reading of the vendor's request rules, written from the contract
(`contracts/citedy-warm-lead.openapi.yaml`), not borrowed from the relay.

The relay validates start requests with its model (`relay.vendors.citedy_models`) so that a
bad request is refused at ingress. If the simulator used that same model, a mistake in it would
be made on both sides and the tests that check the relay against the "vendor" would agree by
construction. So the simulator checks requests the way the vendor documents them:

- the JSON Schema `CreateWarmLeadRunRequest`, copied here verbatim from the contract (a test
  compares the copy with the contract file) and applied with `jsonschema`;
- the contract's prose for `domain`: "One company domain. Bare domains and http(s) URLs are
  accepted, but paths/social profile URLs are rejected.", implemented below with the standard
  library's URL parser;
- the defaults the contract's descriptions state ("Defaults to content-led-saas / 3 / 3 / 90
  when omitted"), which decide whether two requests with one idempotency key ask for the same run.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

#: components.schemas.CreateWarmLeadRunRequest, as the contract states it.
REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "domain": {
            "type": "string",
            "minLength": 1,
            "maxLength": 253,
            "description": "One company domain. Bare domains and http(s) URLs are accepted, but "
            "paths/social profile URLs are rejected.",
        },
        "icp": {
            "type": "string",
            "enum": ["seo-geo-agency", "content-led-saas", "vertical-saas"],
            "description": "Ideal customer profile. Defaults to content-led-saas when omitted.",
        },
        "buyerRoles": {
            "type": "array",
            "maxItems": 6,
            "items": {"type": "string", "minLength": 1, "maxLength": 80},
        },
        "maxContacts": {
            "type": "integer",
            "minimum": 1,
            "maximum": 3,
            "description": "Maximum buyer candidates. Defaults to 3 when omitted.",
        },
        "drafts": {
            "type": "integer",
            "minimum": 1,
            "maximum": 3,
            "description": "Maximum outreach drafts. Defaults to 3 when omitted.",
        },
        "freshnessDays": {
            "type": "integer",
            "minimum": 7,
            "maximum": 365,
            "description": "Evidence lookback window in days. Defaults to 90 when omitted.",
        },
        "idempotencyKey": {"type": "string", "minLength": 8, "maxLength": 128},
    },
    "required": ["domain"],
    "additionalProperties": False,
}

#: The defaults the field descriptions above state; buyerRoles has none, so none are assumed.
DEFAULTS: dict[str, Any] = {
    "icp": "content-led-saas",
    "buyerRoles": [],
    "maxContacts": 3,
    "drafts": 3,
    "freshnessDays": 90,
}

#: Sites whose pages are people's or brands' profiles ("social profile URLs").
SOCIAL_SITES = (
    "linkedin.com",
    "twitter.com",
    "x.com",
    "facebook.com",
    "instagram.com",
    "youtube.com",
    "tiktok.com",
    "threads.net",
    "pinterest.com",
    "reddit.com",
)

_VALIDATOR = Draft202012Validator(REQUEST_SCHEMA)
_HOST_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class Refused(ValueError):
    """A request the vendor answers 400 to: `field` names what is wrong, the message never
    repeats the value."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _schema_refusal(error: ValidationError, body: Any) -> Refused:
    """One schema error as a field name and a phrase built from the schema, not the input."""
    field = _path(error.absolute_path)
    kind, limit = error.validator, error.validator_value
    if kind == "required" and isinstance(body, dict):
        missing = next((name for name in limit if name not in body), "body")
        return Refused(_path([*error.absolute_path, missing]), f"{missing} is required")
    if kind == "additionalProperties" and isinstance(error.instance, dict):
        known = set(REQUEST_SCHEMA["properties"])
        extra = sorted(str(k) for k in error.instance if k not in known)[0][:64]
        allowed = ", ".join(REQUEST_SCHEMA["properties"])
        return Refused(extra, f"{extra} is not a known field (allowed: {allowed})")
    field = field or "body"
    if kind == "type":
        phrase = f"must be {'an' if limit in ('object', 'array', 'integer') else 'a'} {limit}"
    elif kind == "enum":
        phrase = "must be one of " + ", ".join(map(str, limit))
    else:
        phrase = {
            "minLength": f"must be at least {limit} characters long",
            "maxLength": f"must be at most {limit} characters long",
            "minimum": f"must be at least {limit}",
            "maximum": f"must be at most {limit}",
            "maxItems": f"must have at most {limit} items",
        }.get(str(kind), "is invalid")
    return Refused(field, f"{field} {phrase}")


def normalize_domain(domain: str) -> str:
    """The company's host name from a bare domain or an http(s) URL of its site's root:
    lowercase, without scheme, port, trailing dot or `www.`. Raises Refused."""
    text = domain.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        rest = text
    elif scheme.lower() not in ("http", "https"):
        raise Refused("domain", "domain must be a bare domain or an http(s) URL")
    if any(ch.isspace() for ch in rest):
        raise Refused("domain", "domain must not contain spaces")
    try:
        parts = urlsplit("//" + rest)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise Refused("domain", "domain is not a valid URL") from None
    if parts.path not in ("", "/") or parts.query or parts.fragment or "?" in rest or "#" in rest:
        raise Refused("domain", "domain must be the site's root: no path, query or fragment")
    if parts.username is not None or parts.password is not None:
        raise Refused("domain", "domain must not include user credentials")
    host = (parts.hostname or "").rstrip(".")
    try:
        host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise Refused("domain", "domain is not a valid host name") from None
    host = host.removeprefix("www.")
    labels = host.split(".")
    if len(labels) < 2 or not all(_HOST_LABEL.match(label) for label in labels):
        raise Refused("domain", "domain must be a host name such as example.com")
    if labels[-1].isdigit():
        raise Refused("domain", "domain must be a domain name, not an IP address")
    if any(host == site or host.endswith("." + site) for site in SOCIAL_SITES):
        raise Refused("domain", "domain must be a company's own site, not a social profile")
    return host


def validate(body: Any) -> dict[str, Any]:
    """The request's effective parameters (defaults filled in, domain normalized), or Refused
    for the first problem found."""
    error = best_match(_VALIDATOR.iter_errors(body))
    if error is not None:
        raise _schema_refusal(error, body)
    given = {k: v for k, v in body.items() if k in DEFAULTS}
    return {**DEFAULTS, **given, "domain": normalize_domain(body["domain"])}
