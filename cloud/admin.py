"""Setting up organisations, people and gateways (used by the CLI, the demo and tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from devices import utc_now
from devices.chain import Verdict

from .brokerconf import (
    Identity,
    Listener,
    dispatch_identities,
    ensure_tls,
    gateway_rules,
    write_broker_config,
)
from .chain import chains_of, verify_chain
from .clock import database_now
from .credentials import generate_password, mosquitto_hash
from .db import (
    Device,
    Gateway,
    Home,
    Organisation,
    Resident,
    Team,
    User,
    make_engine,
    make_sessionmaker,
)
from .migrate import upgrade
from .security import Role, hash_password
from .settings import CloudSettings
from .signin import revoke_sessions


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


async def ensure_team(session: AsyncSession, org_id: str, name: str) -> Team:
    team = (
        await session.execute(select(Team).where(Team.org_id == org_id, Team.name == name))
    ).scalar_one_or_none()
    if team is None:
        team = Team(org_id=org_id, name=name)
        session.add(team)
        await session.flush()
    return team


async def ensure_user(
    session: AsyncSession,
    org_id: str,
    username: str,
    password: str,
    role: Role,
    *,
    team_id: int | None = None,
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
            team_id=team_id,
        )
        session.add(user)
        await session.flush()
    return user


async def find_user(session: AsyncSession, username: str) -> User | None:
    return (
        await session.execute(select(User).where(User.username == username))
    ).scalar_one_or_none()


async def change_user(
    session: AsyncSession,
    user: User,
    *,
    password: str | None = None,
    role: Role | None = None,
    disabled: bool | None = None,
) -> str:
    """Change one thing about a user (from the command line), say exactly what changed,
    and end their sessions when it touches how they sign in."""
    now = await database_now(session)
    if password is not None:
        user.password_hash = hash_password(password)
        ended = await revoke_sessions(session, user.id, now)
        return f"{user.username}: new password; {ended} session(s) ended"
    if role is not None:
        if role.value == user.role:
            return f"{user.username} is {user.role} already: nothing changed"
        before, user.role = user.role, role.value
        ended = await revoke_sessions(session, user.id, now)
        return f"{user.username}: {before} -> {role.value}; {ended} session(s) ended"
    if disabled is not None:
        if disabled == (user.disabled_at is not None):
            state = "disabled" if disabled else "enabled"
            return f"{user.username} is {state} already: nothing changed"
        user.disabled_at = now if disabled else None
        if not disabled:
            return f"{user.username}: enabled"
        ended = await revoke_sessions(session, user.id, now)
        return f"{user.username}: disabled; {ended} session(s) ended"
    return "nothing changed"


async def ensure_gateway(session: AsyncSession, org_id: str, gateway_id: str, name: str) -> Gateway:
    if gateway_id.startswith("direct-"):  # the service's own intake (cloud/direct.py)
        raise ValueError(f"{gateway_id}: gateway ids starting with direct- are reserved")
    gateway = await session.get(Gateway, gateway_id)
    if gateway is None:
        gateway = Gateway(id=gateway_id, org_id=org_id, name=name, last_seen_at=None, online=None)
        session.add(gateway)
        await session.flush()
    return gateway


async def ensure_home(
    session: AsyncSession,
    org_id: str,
    home_id: str,
    address: str,
    key_safe: str | None = None,
    *,
    location: tuple[float, float] | None = None,
) -> Home:
    home = await session.get(Home, (org_id, home_id))
    if home is None:
        latitude, longitude = location if location is not None else (None, None)
        home = Home(
            org_id=org_id,
            id=home_id,
            address=address,
            key_safe=key_safe,
            notes="",
            latitude=latitude,
            longitude=longitude,
        )
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
    *,
    born: date | None = None,
    language: str | None = None,
    notes: str = "",
) -> Resident:
    resident = await session.get(Resident, (org_id, resident_id))
    if resident is None:
        resident = Resident(
            org_id=org_id,
            id=resident_id,
            home_id=home_id,
            name=name,
            notes=notes,
            contacts=contacts or [],
            born=born,
            language=language,
        )
        session.add(resident)
        await session.flush()
    return resident


async def issue_broker_password(session: AsyncSession, gateway: Gateway) -> str:
    """A new broker password for the gateway (the old one, if any, stops working at the
    next broker-config and reload); only its hash is kept. Returns the password."""
    password = generate_password()
    gateway.broker_password_hash = mosquitto_hash(password)
    await session.flush()
    return password


async def remove_gateway(session: AsyncSession, org_id: str, gateway_id: str) -> bool:
    """Forget a gateway and the devices it reported; its alarms and events stay as
    history. Its broker login goes at the next broker-config and reload. False when
    the organisation has no such gateway."""
    gateway = await session.get(Gateway, gateway_id)
    if gateway is None or gateway.org_id != org_id:
        return False
    await session.execute(delete(Device).where(Device.gateway_id == gateway_id))
    await session.delete(gateway)
    await session.flush()
    return True


async def gateway_identities(session: AsyncSession) -> list[Identity]:
    """Every registered gateway that has a broker password, as a broker identity."""
    rows = await session.execute(
        select(Gateway.id, Gateway.broker_password_hash)
        .where(Gateway.broker_password_hash.is_not(None))
        .order_by(Gateway.id)
    )
    return [Identity(gw_id, hashed, gateway_rules(gw_id)) for gw_id, hashed in rows if hashed]


async def write_deployment_broker(
    settings: CloudSettings,
    out: Path,
    listener: Listener,
    hostnames: Sequence[str],
    dispatch: Sequence[str],
    own_tls: tuple[Path | None, Path | None, Path | None] = (None, None, None),
) -> Path:
    """``trygg cloud broker-config``: the broker's files for every registered gateway and
    the dispatch identities, in ``out``. Returns the mosquitto.conf written."""
    ca_cert, server_cert, server_key = own_tls
    tls = ensure_tls(
        out, hostnames, ca_cert=ca_cert, server_cert=server_cert, server_key=server_key
    )
    async with admin_session(settings) as session:
        gateways = await gateway_identities(session)
    return write_broker_config(out, listener, tls, [*gateways, *dispatch_identities(out, dispatch)])


@dataclass(frozen=True, slots=True)
class ChainReport:
    org_id: str
    chain: str  # audit, or lock:<lock id>
    verdict: Verdict


async def verify_logs(session: AsyncSession, org_id: str | None = None) -> list[ChainReport]:
    """``trygg cloud verify-log``: check the audit chain and every lock's chain of one
    organisation, or of every one. Raises LookupError for an organisation not there."""
    if org_id is not None and await session.get(Organisation, org_id) is None:
        raise LookupError(f"no organisation {org_id}")
    orgs = (
        [org_id]
        if org_id is not None
        else list(
            (await session.execute(select(Organisation.id).order_by(Organisation.id))).scalars()
        )
    )
    reports = []
    for org in orgs:
        for chain in await chains_of(session, org):
            reports.append(ChainReport(org, chain, await verify_chain(session, org, chain)))
    return reports
