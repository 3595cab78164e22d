"""Reading Sage lists page by page (S-PAG) as a sequence of listings a sync can resume.

A sync reads one or more listings in order (open bills: UNPAID then PART_PAID). Each page it yields
carries a resume token naming the listing and the `$next` path Sage gave for the page after it, so
a sync interrupted after any page continues with the next page and reads no earlier page again.
"""

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import requests
from pydantic import ValidationError

from payedge_connect.providers.base import ChangesPage
from payedge_connect.providers.http import ProviderApi, ProviderError
from payedge_connect.providers.sage import wire

MAX_PAGE_SIZE = 200  # S-PAG: items_per_page is at most 200
_API_ROOT = "/v3.1/"
_TOKEN_VERSION = 1


@dataclass(frozen=True)
class Listing:
    """One Sage list read during a sync; `name` is how resume tokens refer to it."""

    name: str
    path: str
    params: Mapping[str, str]

    @property
    def route(self) -> str:
        return f"GET /{self.path}"


def read_listings(
    api: ProviderApi,
    listings: Sequence[Listing],
    resume: str | None,
    map_page: Callable[[Listing, list[Any]], ChangesPage],
) -> Iterator[ChangesPage]:
    """Every page of every listing in order, from where `resume` points (None: the beginning)."""
    start, next_path = _position(listings, resume)
    for index in range(start, len(listings)):
        listing = listings[index]
        for items, following in _pages(api, listing, next_path if index == start else None):
            if following:
                token: str | None = _token(listing.name, following)
            elif index + 1 < len(listings):
                token = _token(listings[index + 1].name, None)
            else:
                token = None
            yield replace(map_page(listing, items), resume=token)


def read_all(api: ProviderApi, listing: Listing) -> Iterator[Any]:
    """Every item of one listing (no resume: for look-ups a sync redoes when it restarts)."""
    for items, _ in _pages(api, listing, None):
        yield from items


def read_json(response: requests.Response) -> Any:
    """A Sage JSON body with every number as a Decimal (never through float)."""
    try:
        return response.json(parse_float=Decimal)
    except requests.JSONDecodeError:
        raise ProviderError(response.status_code, "Sage answered with a body that is not JSON") from None


def _pages(api: ProviderApi, listing: Listing, next_path: str | None) -> Iterator[tuple[list[Any], str | None]]:
    if next_path is None:
        params = {**listing.params, "items_per_page": str(MAX_PAGE_SIZE)}
        response = api.get(listing.path, params=params, route=listing.route)
    else:
        response = api.get(_relative(next_path), route=listing.route)
    while True:
        page = read_page(response)
        yield page.items, page.next
        if not page.next:
            return
        response = api.get(_relative(page.next), route=listing.route)


def read_page(response: requests.Response) -> wire.Page:
    """One page of a Sage list."""
    try:
        return wire.Page.model_validate(read_json(response))
    except ValidationError:
        raise ProviderError(response.status_code, "Sage answered a list without $items") from None


def _relative(next_path: str) -> str:
    """`$next` as a path under the API root. Sage gives it relative to /v3.1 ("/contacts?page=2");
    an absolute URL keeps only its path, so the bearer token never leaves for another host."""
    parts = urlsplit(next_path)
    path = parts.path
    if path.startswith(_API_ROOT):
        path = path[len(_API_ROOT) - 1 :]
    return f"{path.lstrip('/')}?{parts.query}" if parts.query else path.lstrip("/")


def _token(listing: str, next_path: str | None) -> str:
    return json.dumps({"v": _TOKEN_VERSION, "listing": listing, "next": next_path}, separators=(",", ":"))


def _position(listings: Sequence[Listing], resume: str | None) -> tuple[int, str | None]:
    """Which listing a resume token points into, and the page path to read next (None: its start)."""
    if resume is None:
        return 0, None
    try:
        token = json.loads(resume)
    except ValueError:
        raise ValueError("not a Sage resume token") from None
    names = [listing.name for listing in listings]
    if not isinstance(token, dict) or token.get("v") != _TOKEN_VERSION or token.get("listing") not in names:
        raise ValueError("not a resume token of this Sage listing")
    next_path = token.get("next")
    if next_path is not None and not isinstance(next_path, str):
        raise ValueError("not a resume token of this Sage listing")
    return names.index(token["listing"]), next_path
