"""The board's secrets: session tokens, their signed cookie value, and CSRF tokens.

A session token is 256 random bits. The cookie carries it signed (HMAC-SHA256 with a key
derived from the service's secret key), so a forged or edited cookie is refused before any
query; the database stores only the token's SHA-256. The CSRF token of a session is derived
from its token (HMAC with a second derived key): nothing more to store, and it is worthless
without the session cookie, which a cross-site page can neither read nor send on a POST
(``SameSite=Lax``). Every comparison is constant-time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

__all__ = ["BoardTokens", "hash_token", "new_token"]

_MAC_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_token() -> str:
    """A new random session token (or sign-in nonce)."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """What the database keeps of a session token."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


class BoardTokens:
    """Signs cookies and derives CSRF tokens with keys derived from one secret."""

    def __init__(self, secret: bytes) -> None:
        # One key per purpose: a cookie MAC can never pass for a CSRF token or a cursor.
        self._cookie_key = hmac.new(secret, b"taskyard.board.cookie", hashlib.sha256).digest()
        self._csrf_key = hmac.new(secret, b"taskyard.board.csrf", hashlib.sha256).digest()

    def _cookie_mac(self, token: str) -> bytes:
        return hmac.new(self._cookie_key, token.encode("ascii"), hashlib.sha256).digest()

    def cookie_value(self, token: str) -> str:
        return f"{token}.{_b64(self._cookie_mac(token)[:_MAC_BYTES])}"

    def token_of(self, cookie: str | None) -> str | None:
        """The token of a cookie value this service signed, else None."""
        if not cookie or len(cookie) > 200 or not cookie.isascii():
            return None
        token, _, mac_text = cookie.rpartition(".")
        try:
            mac = _unb64(mac_text)
        except (ValueError, binascii.Error):
            return None
        if not token or not hmac.compare_digest(mac, self._cookie_mac(token)[:_MAC_BYTES]):
            return None
        return token

    def csrf_token(self, token: str) -> str:
        """The CSRF token of the session (or sign-in nonce) *token*."""
        return _b64(hmac.new(self._csrf_key, token.encode("ascii"), hashlib.sha256).digest())

    def csrf_matches(self, token: str, submitted: str | None) -> bool:
        if not submitted or not submitted.isascii():
            return False
        return hmac.compare_digest(self.csrf_token(token).encode(), submitted.encode())
