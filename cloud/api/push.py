"""Web Push subscriptions of home-care staff: the staff page subscribes each phone or
browser, lists and removes its own (docs/staff.md, "Web Push"). Subscribing and removing
are audited; what a push says and when one is sent: cloud/push.py."""

from __future__ import annotations

from datetime import datetime
from http import HTTPStatus
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Path, Response, status
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from devices import utc_now

from ..audit import audit
from ..db import PushSubscription
from ..push import SubscriptionRefused, check_auth, check_endpoint, check_p256dh
from ..services import Services
from .deps import PushSubscriber, ServicesDep, SessionDep
from .strict import StrictRoute

router = APIRouter(prefix="/my/push", tags=["web push"], route_class=StrictRoute)

# Phones and browsers per staff member: a few each, and a bound on what one login can add.
MAX_SUBSCRIPTIONS = 10

SubscriptionId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the subscription's id")]


class ApplicationServerKey(BaseModel):
    # The service's VAPID public key, as pushManager.subscribe takes applicationServerKey:
    # an uncompressed P-256 point in URL-safe base64 without padding.
    public_key: str


class SubscriptionKeys(BaseModel):
    model_config = ConfigDict(extra="forbid")
    p256dh: str = Field(max_length=200, description="the browser's ECDH P-256 public key")
    auth: str = Field(max_length=100, description="the browser's 16-byte auth secret")

    @field_validator("p256dh")
    @classmethod
    def _point(cls, p256dh: str) -> str:
        return check_p256dh(p256dh)

    @field_validator("auth")
    @classmethod
    def _secret(cls, auth: str) -> str:
        return check_auth(auth)


class SubscriptionIn(BaseModel):
    """A browser's PushSubscription as its toJSON() gives it, and a label for the list."""

    model_config = ConfigDict(extra="forbid")
    endpoint: str = Field(min_length=1, max_length=1000)
    # The browser's own end of the subscription, if it has one: not kept (a push to an
    # ended subscription gets 404 or 410, which removes it).
    expiration_time: float | None = Field(default=None, alias="expirationTime", ge=0)
    keys: SubscriptionKeys
    label: str = Field(default="", max_length=100, description="e.g. the phone's name")

    @field_validator("label")
    @classmethod
    def _printable(cls, label: str) -> str:
        if not label.isprintable():
            raise ValueError("a label of printable characters, on one line")
        return label.strip()


class SubscriptionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    endpoint: str
    label: str
    created_at: datetime
    last_sent_at: datetime | None
    failures: int


def _push_on(services: Services) -> None:
    if services.push.key.disabled:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=services.push.key.disabled)


@router.get("/key")
async def get_key(user: PushSubscriber, services: ServicesDep) -> ApplicationServerKey:
    """The key to subscribe with (503 when this service sends no pushes)."""
    _push_on(services)
    assert services.push.key.public is not None
    return ApplicationServerKey(public_key=services.push.key.public)


@router.get("/subscriptions")
async def get_subscriptions(user: PushSubscriber, session: SessionDep) -> list[SubscriptionPublic]:
    """Your subscribed phones and browsers, the oldest first."""
    rows = await session.scalars(
        select(PushSubscription)
        .where(PushSubscription.user_id == user.id)
        .order_by(PushSubscription.id)
    )
    return [SubscriptionPublic.model_validate(row) for row in rows]


@router.post("/subscriptions")
async def post_subscription(
    body: SubscriptionIn,
    user: PushSubscriber,
    session: SessionDep,
    services: ServicesDep,
    response: Response,
) -> SubscriptionPublic:
    """Push your new assignments to this browser: 201 for a new subscription, 200 for one
    already known (its keys and label renewed; a browser another user had subscribed on
    this endpoint is now yours)."""
    _push_on(services)
    settings = services.settings
    try:
        check_endpoint(body.endpoint, settings.push_hosts, settings.push_allow_loopback)
    except SubscriptionRefused as exc:
        raise HTTPException(HTTPStatus.UNPROCESSABLE_ENTITY, detail=str(exc)) from None
    row = await session.scalar(
        select(PushSubscription).where(PushSubscription.endpoint == body.endpoint)
    )
    detail: dict[str, object] = {"label": body.label, "service": urlsplit(body.endpoint).netloc}
    if row is None or row.user_id != user.id:
        mine = await session.scalar(select(func.count()).where(PushSubscription.user_id == user.id))
        if (mine or 0) >= MAX_SUBSCRIPTIONS:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                detail=f"At most {MAX_SUBSCRIPTIONS} subscriptions: remove one first",
            )
    if row is None:
        row = PushSubscription(endpoint=body.endpoint, created_at=utc_now(), failures=0)
        session.add(row)
        response.status_code = status.HTTP_201_CREATED
    elif row.user_id != user.id:
        detail["moved"] = True
        row.created_at, row.last_sent_at, row.failures = utc_now(), None, 0
    row.org_id, row.user_id = user.org_id, user.id
    row.p256dh, row.auth, row.label = body.keys.p256dh, body.keys.auth, body.label
    try:
        await session.flush()
    except IntegrityError:  # the same browser subscribing twice at once
        await session.rollback()
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail="Subscribed at the same moment: try again"
        ) from None
    audit(session, user, "push.subscribe", f"push_subscription:{row.id}", detail)
    public = SubscriptionPublic.model_validate(row)
    await session.commit()
    return public


@router.delete("/subscriptions/{subscription_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_subscription(
    subscription_id: SubscriptionId, user: PushSubscriber, session: SessionDep
) -> None:
    """No more pushes to that phone or browser (yours only)."""
    row = await session.get(PushSubscription, subscription_id)
    if row is None or row.user_id != user.id:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=f"No subscription {subscription_id} of yours"
        )
    await session.delete(row)
    target = f"push_subscription:{subscription_id}"
    audit(session, user, "push.remove", target, {"label": row.label})
    await session.commit()
