"""Keyset pagination with opaque, tamper-evident cursors.

A cursor names the listing and the last id served, signed with HMAC-SHA256:
``base64url("<listing>:<id>") "." base64url(mac[:16])``. Pages continue *after* that id, so
rows inserted meanwhile never shift or repeat a page (unlike OFFSET). A cursor that was not
issued by this service for this listing (garbled, forged, edited, from another listing) is a
400 naming ``cursor``; nothing of it reaches a query.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query, Request

from taskyard.api_types import MAX_ID
from taskyard.errors import FieldError, ProblemError, ProblemKind

__all__ = [
    "CURSOR_PATTERN",
    "MAX_CURSOR_LENGTH",
    "CursorCodec",
    "PageRequest",
    "page_request",
]

_MAC_BYTES = 16
# The shape of every cursor `CursorCodec.encode` makes (two unpadded base64url parts), and
# a bound well above the longest one. `decode` checks both before anything else, and the
# schema publishes both; what no schema can say is whether this service signed it.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$"
MAX_CURSOR_LENGTH = 200
_CURSOR = re.compile(CURSOR_PATTERN)
_RowT = TypeVar("_RowT")


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorCodec:
    """Signs and checks cursors with one secret key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, listing: str, after_id: int) -> str:
        payload = f"{listing}:{after_id}".encode("ascii")
        return f"{_b64encode(payload)}.{_b64encode(self._mac(payload))}"

    def decode(self, listing: str, cursor: str) -> int:
        """The id a cursor continues after; `ProblemError` (400) if it is not genuine."""
        if len(cursor) > MAX_CURSOR_LENGTH or _CURSOR.fullmatch(cursor) is None:
            raise _invalid_cursor()
        try:
            payload_text, mac_text = cursor.split(".")
            payload, mac = _b64decode(payload_text), _b64decode(mac_text)
        except (ValueError, binascii.Error):
            raise _invalid_cursor() from None
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise _invalid_cursor()
        name, _, after = payload.decode("ascii", "replace").partition(":")
        if name != listing or not after.isdigit() or not 0 < int(after) <= MAX_ID:
            raise _invalid_cursor()
        return int(after)


def _invalid_cursor() -> ProblemError:
    return ProblemError(
        ProblemKind.INVALID_CURSOR,
        "cursor: not a cursor this listing issued (pass next_cursor back unchanged)",
        errors=[FieldError(field="cursor", location="query", message="invalid cursor")],
    )


async def cursor_codec(request: Request) -> CursorCodec:
    codec = request.app.state.cursor_codec
    assert isinstance(codec, CursorCodec)
    return codec


@dataclass(frozen=True, slots=True)
class PageRequest:
    """What a listing endpoint needs: how many rows, after which id, and how to sign."""

    listing: str
    limit: int
    after_id: int | None
    codec: CursorCodec

    def split(
        self, rows: Sequence[_RowT], id_of: Callable[[_RowT], int]
    ) -> tuple[list[_RowT], str | None]:
        """The page's rows and the next cursor, from up to ``limit + 1`` fetched rows."""
        if len(rows) <= self.limit:
            return list(rows), None
        page = list(rows[: self.limit])
        return page, self.codec.encode(self.listing, id_of(page[-1]))


def page_request(listing: str) -> Callable[..., Any]:
    """A dependency parsing ``limit`` and ``cursor`` for the listing named *listing*."""

    async def parse(
        codec: Annotated[CursorCodec, Depends(cursor_codec)],
        limit: Annotated[int, Query(ge=1, le=100, description="Page size.")] = 50,
        cursor: Annotated[
            str | None,
            Query(
                description="`next_cursor` of the previous page, unchanged. Opaque: a cursor "
                "of this shape that this service did not issue for this listing is a 400 "
                "`/problems/invalid-cursor`, like one of any other shape.",
                # Documented, checked by the codec: every bad cursor is the same 400.
                json_schema_extra={"maxLength": MAX_CURSOR_LENGTH, "pattern": CURSOR_PATTERN},
            ),
        ] = None,
    ) -> PageRequest:
        after = codec.decode(listing, cursor) if cursor is not None else None
        return PageRequest(listing=listing, limit=limit, after_id=after, codec=codec)

    return parse
