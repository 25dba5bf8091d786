"""Dashboard access tokens: random secrets shown once, stored as SHA-256 in the ledger.

A token belongs to one member (reads that member's data only) or, with no member, to an operator
(reads everything). Revoked tokens stop working at once.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from coordinator.ledger import Ledger
from coordinator.ledger.queries import web as q
from coordinator.transaction.export import check_member

PREFIX = "pg_"


@dataclass(frozen=True)
class Principal:
    member: str | None  # None: operator

    @property
    def operator(self) -> bool:
        return self.member is None

    def may_read(self, member: str) -> bool:
        return self.member is None or self.member == member


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue(ledger: Ledger, member: str | None, *, now: int, label: str = "") -> str:
    """A new token for ``member`` (None: operator); only its hash is stored."""
    if member is not None:
        check_member(ledger, member)
    token = PREFIX + secrets.token_urlsafe(24)
    q.add_token(ledger, _hash(token), member, label, now)
    return token


def identify(ledger: Ledger, token: str) -> Principal | None:
    if not token.startswith(PREFIX) or len(token) > 100:
        return None
    row = q.token_member(ledger, _hash(token))
    return None if row is None else Principal(row[0])


def revoke(ledger: Ledger, token: str, *, now: int) -> bool:
    return q.revoke_token(ledger, _hash(token), now)
