"""Setting up organisations, people and gateways (used by the CLI, the demo and tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from devices import utc_now

from .db import Gateway, Home, Organisation, Resident, User, make_engine, make_sessionmaker
from .migrate import upgrade
from .security import Role, hash_password
from .settings import CloudSettings


@asynccontextmanager
async def admin_session(settings: CloudSettings) -> AsyncIterator[AsyncSession]:
    """A session on a migrated database, for one-off administration."""
    engine = make_engine(settings.database_url)
    try:
        await upgrade(engine)
        async with make_sessionmaker(engine)() as session:
            yield session
    finally:
        await engine.dispose()


async def ensure_organisation(session: AsyncSession, org_id: str, name: str) -> Organisation:
    org = await session.get(Organisation, org_id)
    if org is None:
        org = Organisation(id=org_id, name=name)
        session.add(org)
        await session.flush()
    return org


async def ensure_user(
    session: AsyncSession, org_id: str, username: str, password: str, role: Role
) -> User:
    user = (
        await session.execute(select(User).where(User.username == username))
    ).scalar_one_or_none()
    if user is None:
        user = User(
            org_id=org_id,
            username=username,
            password_hash=hash_password(password),
            role=role.value,
            created_at=utc_now(),
        )
        session.add(user)
        await session.flush()
    return user


async def ensure_gateway(session: AsyncSession, org_id: str, gateway_id: str, name: str) -> Gateway:
    gateway = await session.get(Gateway, gateway_id)
    if gateway is None:
        gateway = Gateway(id=gateway_id, org_id=org_id, name=name, last_seen_at=None, online=None)
        session.add(gateway)
        await session.flush()
    return gateway


async def ensure_home(
    session: AsyncSession, org_id: str, home_id: str, address: str, key_safe: str | None = None
) -> Home:
    home = await session.get(Home, (org_id, home_id))
    if home is None:
        home = Home(org_id=org_id, id=home_id, address=address, key_safe=key_safe, notes="")
        session.add(home)
        await session.flush()
    return home


async def ensure_resident(
    session: AsyncSession,
    org_id: str,
    resident_id: str,
    home_id: str,
    name: str,
    contacts: list[dict[str, str]] | None = None,
) -> Resident:
    resident = await session.get(Resident, (org_id, resident_id))
    if resident is None:
        resident = Resident(
            org_id=org_id,
            id=resident_id,
            home_id=home_id,
            name=name,
            notes="",
            contacts=contacts or [],
        )
        session.add(resident)
        await session.flush()
    return resident
