"""Which vendors the relay speaks to. Adding one is a module in this package and a line here."""

from __future__ import annotations

from relay.config import Settings
from relay.vendors.autoposting import Autoposting
from relay.vendors.base import Provider
from relay.vendors.citedy import Citedy


def build_providers(settings: Settings) -> dict[str, Provider]:
    providers: list[Provider] = [
        Citedy(settings.citedy_base_url, settings.citedy_api_key),
        Autoposting(
            settings.autoposting_base_url,
            settings.autoposting_api_key,
            settings.autoposting_terminal,
        ),
    ]
    return {p.name: p for p in providers}
