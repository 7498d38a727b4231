"""Request dependencies: the database session, the caller, and role checks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from ..clock import database_now
from ..db import Resident, Session, User
from ..security import InvalidToken, Role, read_token
from ..services import Services
from ..signin import second_factor_required, session_live

oauth2 = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_session(services: ServicesDep) -> AsyncIterator[AsyncSession]:
    async with services.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]

_UNAUTHORISED = HTTPException(
    status.HTTP_401_UNAUTHORIZED,
    detail="Not signed in, or the session has expired",
    headers={"WWW-Authenticate": "Bearer"},
)


# The consoles' session cookie: HttpOnly, so no script on the page can read the token.
SESSION_COOKIE = "trygg_session"
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True, slots=True)
class SignedIn:
    user: User
    session: Session
    second_factor_needed: bool  # and not given in this session: only enrolment is open


def _same_site(request: Request) -> bool:
    """A cookie-borne request that changes something must come from the console's own
    pages (the cookie is SameSite=Strict as well; this holds where that is not enforced)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    return origin is None or origin.split("://", 1)[-1] == request.headers.get("host")


async def get_signed_in(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    token: Annotated[str | None, Depends(oauth2)],
) -> SignedIn:
    from_cookie = token is None
    token = token or request.cookies.get(SESSION_COOKIE)
    if not token:
        raise _UNAUTHORISED
    now = await database_now(session)
    try:
        claims = read_token(token, services.settings.secret_key, now)
    except InvalidToken:
        raise _UNAUTHORISED from None
    if from_cookie and request.method in _UNSAFE and not _same_site(request):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="Cross-site request refused")
    record = await session_live(session, claims.session_id, now)
    user = await session.get(User, claims.user_id)
    if (
        record is None
        or user is None
        or record.user_id != user.id
        or user.org_id != claims.org_id
        or user.role != claims.role.value
    ):
        raise _UNAUTHORISED
    needed = not record.second_factor and await second_factor_required(
        session, user, services.settings
    )
    return SignedIn(user, record, needed)


SignedInDep = Annotated[SignedIn, Depends(get_signed_in)]


async def get_current_user(signed_in: SignedInDep) -> User:
    if signed_in.second_factor_needed:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail="Set up a second factor first (POST /api/v1/auth/second-factor)",
            headers={"X-Trygg-Second-Factor": "enrol"},
        )
    return signed_in.user


CurrentUser = Annotated[User, Depends(get_current_user)]


def require_role(*roles: Role) -> Callable[[User], Coroutine[Any, Any, User]]:
    allowed = {r.value for r in roles}

    async def check(user: CurrentUser) -> User:
        if user.role not in allowed:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"This needs one of the roles: {', '.join(sorted(allowed))}",
            )
        return user

    return check


AlarmReader = Annotated[User, Depends(require_role(Role.OPERATOR, Role.SUPERVISOR, Role.ADMIN))]
AlarmHandler = Annotated[User, Depends(require_role(Role.OPERATOR, Role.SUPERVISOR))]
# Staff see and report on the alarms assigned to them (the route checks which).
AlarmViewer = Annotated[
    User, Depends(require_role(Role.OPERATOR, Role.SUPERVISOR, Role.ADMIN, Role.STAFF))
]
OnSiteReporter = Annotated[User, Depends(require_role(Role.OPERATOR, Role.SUPERVISOR, Role.STAFF))]
StatisticsReader = Annotated[User, Depends(require_role(Role.SUPERVISOR, Role.ADMIN))]

# The organisation's people and places (cloud/api/people.py).
_R = Role
Admin = Annotated[User, Depends(require_role(_R.ADMIN))]
PeopleReader = Annotated[User, Depends(require_role(_R.ADMIN, _R.SUPERVISOR, _R.OPERATOR))]
HomeReader = Annotated[
    User, Depends(require_role(_R.ADMIN, _R.SUPERVISOR, _R.OPERATOR, _R.TECHNICIAN))
]
ResidentReader = Annotated[User, Depends(require_role(_R.ADMIN, _R.SUPERVISOR, _R.OPERATOR))]
GatewayReader = Annotated[
    User, Depends(require_role(_R.ADMIN, _R.SUPERVISOR, _R.OPERATOR, _R.TECHNICIAN))
]
DeviceReader = Annotated[User, Depends(require_role(_R.ADMIN, _R.SUPERVISOR, _R.TECHNICIAN))]
DeviceManager = Annotated[User, Depends(require_role(_R.ADMIN, _R.TECHNICIAN))]
AuditReader = Annotated[User, Depends(require_role(_R.ADMIN, _R.SUPERVISOR))]
# Signed commands (cloud/api/commands.py): who installs and looks after the devices, and
# who leads the centre's work; reading them also the operators who handle the alarms.
CommandIssuer = Annotated[User, Depends(require_role(_R.TECHNICIAN, _R.SUPERVISOR, _R.ADMIN))]
CommandReader = Annotated[
    User, Depends(require_role(_R.ADMIN, _R.SUPERVISOR, _R.OPERATOR, _R.TECHNICIAN))
]
# A lock's log and its check (cloud/api/locks.py): who leads the centre's work, and who
# installs and looks after the locks.
LockLogReader = Annotated[User, Depends(require_role(_R.ADMIN, _R.SUPERVISOR, _R.TECHNICIAN))]
# Web Push to their phones (cloud/api/push.py): staff, of their own subscriptions.
PushSubscriber = Annotated[User, Depends(require_role(_R.STAFF))]


async def resident_of(session: AsyncSession, user: User, resident_id: str) -> Resident:
    """One of the user's organisation's residents, or 404."""
    resident = await session.get(Resident, (user.org_id, resident_id))
    if resident is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No resident {resident_id}")
    return resident
