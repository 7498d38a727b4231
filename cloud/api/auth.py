from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordRequestForm
from sqlalchemy import select

from ..audit import audit
from ..clock import database_now
from ..db import User
from ..schemas import Token
from ..security import DUMMY_HASH, Role, TokenClaims, issue_token, verify_password
from .deps import ServicesDep, SessionDep
from .strict import StrictRoute

router = APIRouter(prefix="/auth", tags=["auth"], route_class=StrictRoute)


@router.post("/token")
async def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    session: SessionDep,
    services: ServicesDep,
) -> Token:
    """Sign in. After 5 wrong passwords in 5 minutes for a name (50 from one address),
    sign-in is refused (429, with Retry-After) until the oldest of them is 5 minutes old."""
    limiter = services.login_limiter
    keys = (f"user:{form.username.lower()}", f"ip:{request.client.host if request.client else '-'}")
    wait = limiter.retry_after(*keys)
    if wait > 0:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"Too many failed sign-ins; try again in {math.ceil(wait)} s",
            headers={"Retry-After": str(math.ceil(wait))},
        )
    user = (
        await session.execute(select(User).where(User.username == form.username))
    ).scalar_one_or_none()
    ok = verify_password(user.password_hash if user else DUMMY_HASH, form.password)
    if user is None or not ok:
        limiter.failed(*keys)
        if user is not None:  # a known name: its organisation's log says someone tried
            audit(session, user, "auth.failed", f"user:{user.username}", {"from": keys[1]})
            await session.commit()
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="Wrong username or password")
    limiter.succeeded(keys[0])
    audit(session, user, "auth.login", f"user:{user.username}", {"from": keys[1]})
    await session.commit()
    ttl = services.settings.token_ttl_s
    claims = TokenClaims(user.id, user.org_id, Role(user.role))
    token = issue_token(claims, services.settings.secret_key, ttl, await database_now(session))
    return Token(access_token=token, expires_in=ttl)
