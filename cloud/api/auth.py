from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.security import OAuth2PasswordRequestForm
from sqlalchemy import select

from ..db import User
from ..schemas import Token
from ..security import DUMMY_HASH, Role, TokenClaims, issue_token, verify_password
from .deps import ServicesDep, SessionDep

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/token")
async def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: SessionDep,
    services: ServicesDep,
) -> Token:
    user = (
        await session.execute(select(User).where(User.username == form.username))
    ).scalar_one_or_none()
    ok = verify_password(user.password_hash if user else DUMMY_HASH, form.password)
    if user is None or not ok:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="Wrong username or password")
    ttl = services.settings.token_ttl_s
    token = issue_token(
        TokenClaims(user.id, user.org_id, Role(user.role)), services.settings.secret_key, ttl
    )
    return Token(access_token=token, expires_in=ttl)
