"""Signing in and out, and setting up a second factor (cloud/signin.py has the rules).

``POST /auth/token`` is for programs: the token comes back in the body. The consoles use
``POST /auth/session``: the same check, but the token goes into an HttpOnly, SameSite
cookie that no script on the page can read.
"""

from __future__ import annotations

import math
from http import HTTPStatus
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, Response, status
from pydantic import BaseModel, Field
from sqlalchemy import select

from ..audit import audit
from ..clock import database_now
from ..db import User
from ..schemas import Token
from ..security import DUMMY_HASH, Role, TokenClaims, issue_token, verify_password
from ..signin import (
    check_second_factor,
    hash_code,
    new_enrolment,
    open_secret,
    open_session,
    revoke_sessions,
    seal_secret,
    second_factor_required,
    throttle_failed,
    throttle_keys,
    throttle_succeeded,
    throttle_wait,
    totp_step,
)
from .deps import SESSION_COOKIE, ServicesDep, SessionDep, SignedInDep
from .strict import StrictRoute

router = APIRouter(prefix="/auth", tags=["auth"], route_class=StrictRoute)

Username = Annotated[str, Form(min_length=1, max_length=100)]
Password = Annotated[str, Form(min_length=1, max_length=200)]
Code = Annotated[str | None, Form(max_length=32, description="TOTP or recovery code")]


class SignedInOut(BaseModel):
    username: str
    role: str
    # True: this session may only set up a second factor (POST /auth/second-factor).
    enrol_second_factor: bool


async def _sign_in(
    request: Request,
    db: SessionDep,
    services: ServicesDep,
    username: str,
    password: str,
    code: str | None,
) -> tuple[User, str, bool]:
    """Check a sign-in; returns the user, a token for a new session, and whether that
    session may only enrol a second factor."""
    address = request.client.host if request.client else "-"
    keys = throttle_keys(username, address)
    now = await database_now(db)
    wait = await throttle_wait(db, keys, now)
    if wait > 0:
        seconds = math.ceil(wait)
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"Too many failed sign-ins for this name: try again in {seconds} s",
            headers={"Retry-After": str(seconds)},
        )
    user = (await db.execute(select(User).where(User.username == username))).scalar_one_or_none()
    ok = verify_password(user.password_hash if user else DUMMY_HASH, password)
    if user is None or not ok or user.disabled_at is not None:
        await throttle_failed(db, keys, now)
        if user is not None:  # a known name: its organisation's log says someone tried
            why = "disabled" if ok else "password"
            audit(db, user, "auth.failed", f"user:{user.username}", {"from": address, "why": why})
        await db.commit()
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="Wrong username or password")
    needed = await second_factor_required(db, user, services.settings)
    enrolled = user.totp_enabled_at is not None
    if needed and enrolled:
        if not code:
            await db.commit()
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="Enter the code from your authenticator app",
                headers={"X-Trygg-Second-Factor": "code"},
            )
        key = services.settings.secret_key
        if not await check_second_factor(db, user, code, now, key):
            await throttle_failed(db, keys, now)
            audit(
                db, user, "auth.failed", f"user:{user.username}", {"from": address, "why": "code"}
            )
            await db.commit()
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="Wrong or already used code",
                headers={"X-Trygg-Second-Factor": "code"},
            )
    await throttle_succeeded(db, keys)
    ttl = services.settings.token_ttl_s
    record = await open_session(
        db, user, second_factor=enrolled and needed, address=address, now=now, ttl_s=ttl
    )
    audit(db, user, "auth.login", f"user:{user.username}", {"from": address})
    await db.commit()
    claims = TokenClaims(user.id, user.org_id, Role(user.role), record.id)
    token = issue_token(claims, services.settings.secret_key, ttl, now)
    return user, token, needed and not enrolled


@router.post("/token")
async def login(
    username: Username,
    password: Password,
    request: Request,
    session: SessionDep,
    services: ServicesDep,
    code: Code = None,
) -> Token:
    """Sign in (a program): the token in the body. With a second factor, ``code`` too.
    Failed sign-ins slow further ones down (429 with Retry-After), never lock out."""
    _user, token, _enrol = await _sign_in(request, session, services, username, password, code)
    return Token(access_token=token, expires_in=services.settings.token_ttl_s)


@router.post("/session")
async def console_login(
    username: Username,
    password: Password,
    request: Request,
    response: Response,
    session: SessionDep,
    services: ServicesDep,
    code: Code = None,
) -> SignedInOut:
    """Sign in (a console): the token in an HttpOnly cookie, out of the page's reach."""
    user, token, enrol = await _sign_in(request, session, services, username, password, code)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=services.settings.token_ttl_s,
        path="/api/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https" or services.settings.environment == "production",
    )
    return SignedInOut(username=user.username, role=user.role, enrol_second_factor=enrol)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(
    signed_in: SignedInDep, session: SessionDep, response: Response, everywhere: bool = False
) -> None:
    """End this session (``everywhere``: every session of yours, on every device)."""
    now = await database_now(session)
    only = None if everywhere else signed_in.session.id
    ended = await revoke_sessions(session, signed_in.user.id, now, only=only)
    audit(
        session,
        signed_in.user,
        "auth.logout",
        f"user:{signed_in.user.username}",
        {"sessions": ended},
    )
    await session.commit()
    response.delete_cookie(SESSION_COOKIE, path="/api/")


class Enrolled(BaseModel):
    secret: str
    uri: str
    qr_svg: str
    recovery_codes: list[str]


@router.post("/second-factor")
async def enrol_second_factor(
    signed_in: SignedInDep, session: SessionDep, services: ServicesDep
) -> Enrolled:
    """Start setting up TOTP: a new secret (as text, an otpauth URI and its QR code) and
    ten recovery codes, shown this once. It counts from the confirmation on. Replacing a
    confirmed one needs a session that gave it."""
    user = signed_in.user
    if user.totp_enabled_at is not None and not signed_in.session.second_factor:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="Sign in with your code first")
    enrolment = new_enrolment(user.username)
    user.totp_secret = seal_secret(enrolment.secret, services.settings.secret_key)
    user.totp_enabled_at = None
    user.totp_last_step = None
    user.recovery_codes = [hash_code(c) for c in enrolment.recovery_codes]
    audit(session, user, "auth.second_factor_enrol", f"user:{user.username}")
    await session.commit()
    return Enrolled(
        secret=enrolment.secret,
        uri=enrolment.uri,
        qr_svg=enrolment.qr_svg,
        recovery_codes=enrolment.recovery_codes,
    )


class Confirmation(BaseModel):
    code: str = Field(min_length=6, max_length=8, pattern=r"^[0-9 ]+$")


@router.post("/second-factor/confirm")
async def confirm_second_factor(
    body: Confirmation, signed_in: SignedInDep, session: SessionDep, services: ServicesDep
) -> SignedInOut:
    """Confirm with a first code: from now on every sign-in asks for one, and this
    session counts as having given it."""
    user = signed_in.user
    secret = (
        open_secret(user.totp_secret, services.settings.secret_key) if user.totp_secret else None
    )
    if secret is None:
        raise HTTPException(status.HTTP_409_CONFLICT, detail="Start with POST /auth/second-factor")
    now = await database_now(session)
    step = totp_step(secret, body.code, now, user.totp_last_step)
    if step is None:
        raise HTTPException(HTTPStatus.UNPROCESSABLE_ENTITY, detail="Wrong code")
    user.totp_last_step = step
    user.totp_enabled_at = now
    signed_in.session.second_factor = True
    audit(session, user, "auth.second_factor_on", f"user:{user.username}")
    await session.commit()
    return SignedInOut(username=user.username, role=user.role, enrol_second_factor=False)
