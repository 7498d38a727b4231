"""Signing in: the throttle every replica shares, the second factor, and sessions.

The throttle slows an attacker down and never locks anyone out: failures are counted per
name and address together, per name, and per address, each with some free attempts and
then a delay that doubles with every further failure up to a cap. Someone guessing one
operator's password from outside slows that name down for minutes at most (and the
operator on duty behind the centre's address is slowed only by failures from there);
fifty wrong passwords from one address behind a NAT leave every other name there free.

A second factor (TOTP, RFC 6238) is asked of administrators, supervisors and staff (who
open doors and see cameras) always (TRYGG_SECOND_FACTOR_ROLES), of everyone in an
organisation that asks for it, and of anyone who has set one up.
A code works once: the time step it was accepted for is kept. Ten recovery codes, each
usable once, are shown at enrolment; only their hashes are kept.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
import segno
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from .db import Organisation, Session, SignInThrottle, User
from .security import Role
from .settings import CloudSettings

TOTP_STEP_S = 30
RECOVERY_CODES = 10
ISSUER = "Trygg"


# -- the throttle -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    free: int  # failures before any delay
    first_delay_s: float
    max_delay_s: float
    forget_after_s: float = 3600.0  # failures this old no longer count


RULES = {
    "pair": Rule(free=5, first_delay_s=2.0, max_delay_s=900.0),
    "user": Rule(free=20, first_delay_s=2.0, max_delay_s=300.0),
    "ip": Rule(free=100, first_delay_s=1.0, max_delay_s=300.0),
}


def throttle_keys(username: str, address: str) -> list[str]:
    name = username.strip().lower()[:100]
    return [f"pair:{name}@{address}", f"user:{name}", f"ip:{address}"]


def _rule(key: str) -> Rule:
    return RULES[key.split(":", 1)[0]]


async def throttle_wait(db: AsyncSession, keys: list[str], now: datetime) -> float:
    """Seconds until these keys may try again (0: now)."""
    rows = await db.execute(select(SignInThrottle).where(SignInThrottle.key.in_(keys)))
    return max([(row.blocked_until - now).total_seconds() for row in rows.scalars()] + [0.0])


async def throttle_failed(db: AsyncSession, keys: list[str], now: datetime) -> None:
    for key in keys:
        rule = _rule(key)
        for _attempt in range(3):  # another replica may insert the same key at once
            row = await db.get(SignInThrottle, key, with_for_update=True)
            if row is None:
                db.add(SignInThrottle(key=key, failures=1, last_failed_at=now, blocked_until=now))
            else:
                fresh = (now - row.last_failed_at).total_seconds() > rule.forget_after_s
                row.failures = 1 if fresh else row.failures + 1
                row.last_failed_at = now
                over = row.failures - rule.free
                delay = 0.0 if over <= 0 else rule.first_delay_s * 2 ** min(over - 1, 30)
                row.blocked_until = now + timedelta(seconds=min(delay, rule.max_delay_s))
            try:
                await db.flush()
                break
            except IntegrityError:
                await db.rollback()


async def throttle_succeeded(db: AsyncSession, keys: list[str]) -> None:
    """A right password clears its name's counts (not its address's)."""
    await db.execute(delete(SignInThrottle).where(SignInThrottle.key.in_(keys[:2])))


# -- the second factor --------------------------------------------------------------------


def second_factor_roles(settings: CloudSettings) -> frozenset[Role]:
    return frozenset(Role(r) for r in settings.second_factor_roles.split(",") if r)


async def second_factor_required(db: AsyncSession, user: User, settings: CloudSettings) -> bool:
    """Whether this user signs in with a second factor; the organisation is looked up only
    when neither the user nor the role decides it."""
    if user.totp_enabled_at is not None:
        return True  # whoever set one up uses it
    if Role(user.role) in second_factor_roles(settings):
        return True
    org = await db.get(Organisation, user.org_id)
    return bool(org and org.require_second_factor)


def _fernet(service_key: str) -> Fernet:
    key = HKDF(hashes.SHA256(), 32, salt=None, info=b"trygg totp secrets").derive(
        service_key.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


def seal_secret(secret: str, service_key: str) -> str:
    return _fernet(service_key).encrypt(secret.encode()).decode()


def open_secret(sealed: str, service_key: str) -> str | None:
    try:
        return _fernet(service_key).decrypt(sealed.encode()).decode()
    except InvalidToken:
        return None


@dataclass(frozen=True, slots=True)
class Enrolment:
    secret: str  # base32, for typing into an app by hand
    uri: str  # otpauth://
    qr_svg: str  # the URI as a QR code, an SVG document
    recovery_codes: list[str]


def new_enrolment(username: str) -> Enrolment:
    secret = pyotp.random_base32()
    uri = pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER)
    svg = segno.make(uri, error="m").svg_inline(scale=4, dark="#10263d", light="#ffffff")
    codes = [f"{secrets.token_hex(3)}-{secrets.token_hex(3)}" for _ in range(RECOVERY_CODES)]
    return Enrolment(secret, uri, svg, codes)


def hash_code(code: str) -> str:
    """Recovery codes are 48 random bits each: a plain hash is enough to keep them."""
    return hashlib.sha256(code.strip().lower().encode()).hexdigest()


def totp_step(secret: str, code: str, now: datetime, after: int | None) -> int | None:
    """The time step ``code`` is valid for (this one or its neighbours, for clock
    drift), if it is later than ``after`` (a code works once); else None."""
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    current = int(now.timestamp()) // TOTP_STEP_S
    for step in (current - 1, current, current + 1):
        if after is not None and step <= after:
            continue
        if hmac.compare_digest(totp.at(step * TOTP_STEP_S), code):
            return step
    return None


async def check_second_factor(
    db: AsyncSession, user: User, code: str, now: datetime, service_key: str
) -> bool:
    """A TOTP code not used before, or an unused recovery code (then used up)."""
    secret = open_secret(user.totp_secret, service_key) if user.totp_secret else None
    if secret is not None and user.totp_enabled_at is not None:
        step = totp_step(secret, code, now, user.totp_last_step)
        if step is not None:
            # Only if no other request took this step first (two replicas, one code).
            taken = await db.execute(
                update(User)
                .where(
                    User.id == user.id,
                    (User.totp_last_step.is_(None)) | (User.totp_last_step < step),
                )
                .values(totp_last_step=step)
            )
            return bool(getattr(taken, "rowcount", 0) == 1)
    hashed = hash_code(code)
    if hashed in (user.recovery_codes or []):
        user.recovery_codes = [h for h in user.recovery_codes if h != hashed]
        await db.flush()
        return True
    return False


# -- sessions -----------------------------------------------------------------------------


async def open_session(
    db: AsyncSession, user: User, *, second_factor: bool, address: str, now: datetime, ttl_s: int
) -> Session:
    record = Session(
        id=secrets.token_urlsafe(24),
        user_id=user.id,
        created_at=now,
        expires_at=now + timedelta(seconds=ttl_s),
        revoked_at=None,
        second_factor=second_factor,
        address=address[:64],
    )
    db.add(record)
    await db.flush()
    return record


async def session_live(db: AsyncSession, session_id: str, now: datetime) -> Session | None:
    """The session, if it is neither revoked nor expired and its user is enabled."""
    record = await db.get(Session, session_id)
    if record is None or record.revoked_at is not None or record.expires_at <= now:
        return None
    user = await db.get(User, record.user_id)
    if user is None or user.disabled_at is not None:
        return None
    return record


async def revoke_sessions(
    db: AsyncSession, user_id: int, now: datetime, only: str | None = None
) -> int:
    query = update(Session).where(Session.user_id == user_id, Session.revoked_at.is_(None))
    if only is not None:
        query = query.where(Session.id == only)
    result = await db.execute(query.values(revoked_at=now))
    return int(getattr(result, "rowcount", 0) or 0)
