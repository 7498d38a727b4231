"""Password hashing (Argon2id) and short-lived signed access tokens (JWT, HS256)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from devices import utc_now

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


class InvalidToken(Exception):
    pass


def issue_token(claims: TokenClaims, secret: str, ttl_s: int) -> str:
    now = utc_now()
    payload = {
        "sub": str(claims.user_id),
        "org": claims.org_id,
        "role": claims.role.value,
        "iat": now,
        "exp": now + timedelta(seconds=ttl_s),
    }
    return jwt.encode(payload, secret, algorithm=_ALGORITHM)


def read_token(token: str, secret: str) -> TokenClaims:
    try:
        payload = jwt.decode(
            token, secret, algorithms=[_ALGORITHM], options={"require": ["exp", "sub"]}
        )
        return TokenClaims(int(payload["sub"]), str(payload["org"]), Role(payload["role"]))
    except (jwt.PyJWTError, KeyError, ValueError) as exc:
        raise InvalidToken(str(exc)) from exc
