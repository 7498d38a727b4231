"""Password hashing (Argon2id) and short-lived signed access tokens (JWT, HS256).

Tokens are timed by the caller's clock, the database's (``cloud.clock``): checked
against this host's wall clock, a step back would make every token issued before it
"not yet valid" and sign every operator out in the middle of their work.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
_ALGORITHM = "HS256"


class Role(StrEnum):
    OPERATOR = "operator"
    SUPERVISOR = "supervisor"
    STAFF = "staff"
    TECHNICIAN = "technician"
    ADMIN = "admin"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# Spent on unknown usernames so that a login's timing does not tell which users exist.
DUMMY_HASH = hash_password("not-a-real-password")


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: int
    org_id: str
    role: Role
    session_id: str  # the sign-in it belongs to (cloud.signin): ending that ends the token


class InvalidToken(Exception):
    pass


def issue_token(claims: TokenClaims, secret: str, ttl_s: int, now: datetime) -> str:
    payload = {
        "sub": str(claims.user_id),
        "org": claims.org_id,
        "role": claims.role.value,
        "sid": claims.session_id,
        "iat": now,
        "exp": now + timedelta(seconds=ttl_s),
    }
    return jwt.encode(payload, secret, algorithm=_ALGORITHM)


def read_token(token: str, secret: str, now: datetime) -> TokenClaims:
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=[_ALGORITHM],
            # Expiry is checked below against ``now``, not by PyJWT against this host's clock.
            options={"require": ["exp", "sub", "sid"], "verify_exp": False, "verify_iat": False},
        )
        if not isinstance(payload["exp"], int) or payload["exp"] <= now.timestamp():
            raise InvalidToken("the token has expired")
        return TokenClaims(
            int(payload["sub"]), str(payload["org"]), Role(payload["role"]), str(payload["sid"])
        )
    except (jwt.PyJWTError, KeyError, ValueError) as exc:
        raise InvalidToken(str(exc)) from exc
