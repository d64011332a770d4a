"""Signed keyset cursors in taskyard's format, so every app does the same work per page."""

from __future__ import annotations

import base64
import hashlib
import hmac


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def encode_cursor(key: bytes, listing: str, after_id: int) -> str:
    payload = f"{listing}:{after_id}".encode("ascii")
    mac = hmac.new(key, payload, hashlib.sha256).digest()[:16]
    return f"{_b64(payload)}.{_b64(mac)}"
