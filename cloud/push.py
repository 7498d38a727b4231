"""Web Push to home-care staff: a new assignment reaches the phone in a pocket, with the
staff page closed (docs/staff.md, "Web Push").

A push says only that an alarm was assigned, which (id, kind, priority) and when: never
who the resident is or where; the page shows that after sign-in. Each is encrypted to the
browser's keys (RFC 8291, aes128gcm) and signed with the service's VAPID key (RFC 8292)
by pywebpush, and sent with its asyncio (aiohttp) client: nothing blocks the event loop.

The assigning request never waits for a push: :meth:`PushService.assigned` puts it on a
bounded queue and returns. A few workers send each to every subscription of the staff
member at once, each send bounded by a timeout. When the queue is full the oldest push
waiting is dropped and counted (a full queue means the push services are not keeping up,
and the newest assignment is the one still most likely to stand). A push service's 404
or 410 means the subscription has ended (the browser unsubscribed, the app was removed):
its row is deleted. Other failures are counted on the row and logged; the next push tries
again. Pushes still waiting when the service stops are not sent.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import enum
import logging
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from urllib.parse import urlsplit

import aiohttp
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid
from pydantic import BaseModel
from pywebpush import WebPushException, webpush_async
from sqlalchemy import delete, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devices import Priority, utc_now

from .db import PushSubscription, User
from .schemas import AlarmPublic
from .settings import CloudSettings
from .vapid import VapidKey

log = logging.getLogger("trygg.cloud.push")

PUSH_WORKERS = 4  # so one slow push service does not hold every other staff member's push
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
P256DH_BYTES = 65  # an uncompressed P-256 point
AUTH_BYTES = 16
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")


# -- what a subscription may be -------------------------------------------------------


class SubscriptionRefused(ValueError):
    """A subscription this service will not push to; the message says why."""


def check_endpoint(url: str, hosts: tuple[str, ...], allow_loopback: bool) -> str:
    """``url`` if it is a push service's endpoint this service may post to."""
    if not url.isascii() or not url.isprintable() or " " in url:
        raise SubscriptionRefused("endpoint: a URL of printable ASCII characters only")
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 (a port that is not a number raises here)
    except ValueError as exc:
        raise SubscriptionRefused(f"endpoint: not a URL ({exc})") from None
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise SubscriptionRefused("endpoint: no user, password or fragment in a push endpoint")
    if allow_loopback and host in LOOPBACK_HOSTS and parts.scheme in ("http", "https"):
        return url
    if parts.scheme != "https":
        raise SubscriptionRefused("endpoint: https only")
    if not any(host == h or host.endswith("." + h) for h in hosts):
        raise SubscriptionRefused(
            f"endpoint: {host or 'no host'} is not a push service this dispatch service "
            "sends to (TRYGG_PUSH_SERVICE_HOSTS)"
        )
    return url


def decode_key(value: str, name: str, length: int) -> bytes:
    """A browser's key (URL-safe base64, padded or not) as bytes of the given length."""
    if not _BASE64URL.match(value):
        raise ValueError(f"{name}: URL-safe base64 expected")
    try:
        raw = base64.urlsafe_b64decode(value.rstrip("=") + "=" * (-len(value.rstrip("=")) % 4))
    except (binascii.Error, ValueError):
        raise ValueError(f"{name}: URL-safe base64 expected") from None
    if len(raw) != length:
        raise ValueError(f"{name}: {length} bytes expected, not {len(raw)}")
    return raw


def check_p256dh(value: str) -> str:
    """The browser's ECDH public key: an uncompressed point on P-256, unpadded base64."""
    raw = decode_key(value, "p256dh", P256DH_BYTES)
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError:
        raise ValueError("p256dh: not a point on the P-256 curve") from None
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def check_auth(value: str) -> str:
    raw = decode_key(value, "auth", AUTH_BYTES)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# -- what a push says ----------------------------------------------------------------


class AssignedPush(BaseModel):
    """The decrypted body of a push (JSON): no resident data, ever."""

    v: Literal[1] = 1
    type: Literal["assigned"] = "assigned"
    alarm_id: int
    kind: str
    priority: str
    test: bool
    occurred_at: datetime
    assigned_at: datetime | None


@dataclass(frozen=True, slots=True)
class Push:
    org_id: str
    username: str
    payload: str
    urgency: Literal["high", "normal"]
    topic: str  # a newer push with the same topic replaces one the phone has not had yet


class Outcome(enum.Enum):
    SENT = "sent"
    GONE = "gone"  # 404 / 410: the subscription has ended
    FAILED = "failed"


class PushRedirected(aiohttp.ClientError):
    """A push service answered with a redirect: never followed (it could point anywhere)."""


async def _no_redirects(
    request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    response = await handler(request)
    if 300 <= response.status < 400:
        response.release()
        raise PushRedirected(f"redirected ({response.status})")
    return response


URGENT = frozenset({Priority.CRITICAL.value, Priority.HIGH.value})


class PushService:
    """Web Push of assignments to staff phones. Cheap to build; ``start`` opens the HTTP
    client and the workers, ``stop`` ends them. ``counts``: queued, sent, removed (a
    subscription the push service said has ended), failed, dropped (queue full)."""

    def __init__(
        self,
        settings: CloudSettings,
        sessions: async_sessionmaker[AsyncSession],
        key: VapidKey,
    ) -> None:
        self.key = key
        self.counts: Counter[str] = Counter()
        self._sessions = sessions
        self._subject = settings.vapid_subject
        self._ttl_s = settings.push_ttl_s
        self._timeout_s = settings.push_timeout_s
        self._vapid = None if key.private is None else Vapid(private_key=key.private)
        self._queue: asyncio.Queue[Push] = asyncio.Queue(maxsize=settings.push_queue_size)
        self._workers: list[asyncio.Task[None]] = []
        self._http: aiohttp.ClientSession | None = None

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def assigned(self, org_id: str, username: str, alarm: AlarmPublic) -> None:
        """Push "alarm assigned to you" to each of ``username``'s subscriptions, later:
        call after the assignment is committed; returns at once."""
        if self._vapid is None:
            return
        body = AssignedPush(
            alarm_id=alarm.id,
            kind=alarm.kind,
            priority=alarm.priority,
            test=alarm.test,
            occurred_at=alarm.occurred_at,
            assigned_at=alarm.assigned_at,
        )
        urgency: Literal["high", "normal"] = "high" if alarm.priority in URGENT else "normal"
        self._enqueue(Push(org_id, username, body.model_dump_json(), urgency, f"alarm-{alarm.id}"))

    def _enqueue(self, push: Push) -> None:
        if self._queue.full():
            dropped = self._queue.get_nowait()
            self.counts["dropped"] += 1
            if self.counts["dropped"] % 100 == 1:
                log.warning(
                    "push queue full (%d): dropped the oldest waiting push (alarm %s for %s);"
                    " %d dropped so far",
                    self._queue.maxsize,
                    dropped.topic,
                    dropped.username,
                    self.counts["dropped"],
                )
        self._queue.put_nowait(push)
        self.counts["queued"] += 1

    async def start(self) -> None:
        if self._vapid is None:
            return
        timeout = aiohttp.ClientTimeout(total=self._timeout_s)
        self._http = aiohttp.ClientSession(timeout=timeout, middlewares=(_no_redirects,))
        self._workers = [
            asyncio.create_task(self._work(), name=f"web push {n}") for n in range(PUSH_WORKERS)
        ]

    async def stop(self) -> None:
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers = []
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _work(self) -> None:
        while True:
            push = await self._queue.get()
            try:
                await self._deliver(push)
            except SQLAlchemyError as exc:  # the database away: this push is lost, not the next
                self.counts["failed"] += 1
                log.warning("push for %s not sent: database error (%s)", push.username, exc)
            except Exception:  # a fault of ours in one push must not stop the pushes after it
                self.counts["failed"] += 1
                log.exception("push for %s not sent", push.username)

    async def _deliver(self, push: Push) -> None:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(PushSubscription)
                .join(User, User.id == PushSubscription.user_id)
                .where(
                    User.org_id == push.org_id,
                    User.username == push.username,
                    User.disabled_at.is_(None),
                )
            )
            subscriptions = list(rows)
        if not subscriptions:
            return
        outcomes = await asyncio.gather(*(self._send(s, push) for s in subscriptions))
        await self._record(list(zip(subscriptions, outcomes, strict=True)))

    async def _send(self, subscription: PushSubscription, push: Push) -> Outcome:
        info = {
            "endpoint": subscription.endpoint,
            "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth},
        }
        where = f"subscription {subscription.id} ({urlsplit(subscription.endpoint).netloc})"
        try:
            async with asyncio.timeout(self._timeout_s):
                await webpush_async(
                    info,
                    data=push.payload,
                    vapid_private_key=self._vapid,
                    # A fresh dict each time: pywebpush adds aud and exp to it.
                    vapid_claims={"sub": self._subject},
                    ttl=self._ttl_s,
                    headers={"Urgency": push.urgency, "Topic": push.topic},
                    timeout=self._timeout_s,
                    aiohttp_session=self._http,
                )
        except WebPushException as exc:
            if exc.status_code in (404, 410):
                self.counts["removed"] += 1
                log.info("%s of %s has ended (%s): removed", where, push.username, exc.status_code)
                return Outcome.GONE
            reason = f"the push service answered {exc.status_code or exc.message}"
        except TimeoutError:
            reason = f"no answer within {self._timeout_s:g} s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
        else:
            self.counts["sent"] += 1
            return Outcome.SENT
        self.counts["failed"] += 1
        log.warning("push to %s of %s failed: %s", where, push.username, reason)
        return Outcome.FAILED

    async def _record(self, outcomes: list[tuple[PushSubscription, Outcome]]) -> None:
        now = utc_now()
        table = PushSubscription
        async with self._sessions() as session:
            for subscription, outcome in outcomes:
                row = table.id == subscription.id
                if outcome is Outcome.GONE:
                    await session.execute(delete(table).where(row))
                elif outcome is Outcome.SENT:
                    await session.execute(
                        update(table).where(row).values(last_sent_at=now, failures=0)
                    )
                else:
                    await session.execute(
                        update(table).where(row).values(failures=table.failures + 1)
                    )
            await session.commit()
