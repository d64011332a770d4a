"""taskyard's API key format, read the same way by the comparison apps.

A key reads ``ty_<12 hex key id>_<secret>``; the key id finds the row (a unique index), the
SHA-256 of the whole key must match the stored hash. The apps share taskyard's ``api_keys``
table, so one key made by ``taskyard users create`` authenticates against all three.
"""

from __future__ import annotations

_PREFIX = "ty_"
_KEY_ID_CHARS = 12
_HEX = frozenset("0123456789abcdef")


def key_id_of(api_key: str) -> str | None:
    """The public key id of a well-formed key, else None."""
    start, end = len(_PREFIX), len(_PREFIX) + _KEY_ID_CHARS
    if not api_key.startswith(_PREFIX) or len(api_key) < end + 2 or api_key[end] != "_":
        return None
    key_id = api_key[start:end]
    return key_id if set(key_id) <= _HEX else None
