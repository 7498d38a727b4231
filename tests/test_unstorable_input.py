"""A gateway's event with a NUL character or a non-finite number still becomes an alarm,
with the offending text or number replaced, counted once with its reason, and JSON
queries over the events table keep working. On SQLite and on PostgreSQL, where the NUL
broke them (the ``cloud`` fixture is parametrised)."""

from __future__ import annotations

import asyncio
import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from cloud.db import EventRecord
from cloud.storable import REPLACEMENT, storable
from devices import Event, Priority, stable_event_id
from devices.wire import Ack, acks_topic, events_topic

from .conftest import GATEWAY_ID, RunningCloud, envelope, publish_inventory
from .servers import Mosquitto, mqtt_client, wait_until

pytestmark = pytest.mark.integration


def raw_envelope(n: int, device: str, detail: str) -> str:
    """The n-th event's envelope as a gateway would put it on the wire, with ``device``
    and ``detail`` spliced in as raw JSON (pydantic would not write NaN)."""
    body = json.loads(envelope("unstorable", n, device="placeholder").model_dump_json())
    text = json.dumps(body)
    return text.replace('"placeholder"', device).replace('"detail": {}', f'"detail": {detail}')


SENT = [
    # A NUL inside the detail only: stored as json, it broke ->> over the whole table.
    (1, '"pendant-1"', '{"action": "sin\\u0000gle", "linkquality": 80}'),
    # NUL in the device id and a detail key, and numbers JSON does not have.
    (2, '"pendant\\u00002"', '{"name\\u0000": "x", "battery": NaN, "temperature": -Infinity}'),
    # And a plain press right after them.
    (3, '"pendant-3"', '{"action": "single"}'),
]


async def test_an_event_with_a_nul_or_a_non_finite_number_is_kept_as_an_alarm(
    cloud: RunningCloud, mosquitto: Mosquitto
) -> None:
    # The device whose id has a NUL is known by its storable id, as its alarm will be.
    await publish_inventory(cloud, ["pendant-1", "pendant\ufffd2", "pendant-3"])
    acked: list[str] = []
    async with mqtt_client(mosquitto.port, GATEWAY_ID) as client:
        await client.subscribe(acks_topic(GATEWAY_ID), qos=1)

        async def collect() -> None:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                acked.extend(Ack.model_validate_json(message.payload).event_ids)

        collector = asyncio.create_task(collect())
        for n, device, detail in SENT:
            await client.publish(events_topic(GATEWAY_ID), raw_envelope(n, device, detail), qos=1)
        await wait_until(lambda: len(acked) == len(SENT))
        collector.cancel()
    assert acked == [stable_event_id("unstorable", str(n)) for n, _d, _e in SENT]
    assert cloud.ingest.dropped == {}
    assert cloud.ingest.neutralised == {"nul_character": 2, "non_finite_number": 1}

    async with await cloud.authed("anna") as http:
        queue = (await http.get("/api/v1/alarms")).json()
    devices = sorted(a["device_id"] for a in queue)
    assert devices == ["pendant-1", "pendant-3", f"pendant{REPLACEMENT}2"]
    assert {a["priority"] for a in queue} == {"critical"}

    async with cloud.app.state.services.sessions() as session:
        action = EventRecord.detail["action"].as_string()
        # A JSON query over every row (on PostgreSQL, ->>), the NUL's row included.
        presses = (await session.execute(select(EventRecord.device_id, action))).all()
        plain = await session.scalar(select(EventRecord.device_id).where(action == "single"))
        battery = await session.scalar(
            select(EventRecord.detail["battery"].as_string()).where(
                EventRecord.device_id == f"pendant{REPLACEMENT}2"
            )
        )
        detail_2 = await session.scalar(
            select(EventRecord.detail).where(EventRecord.device_id == f"pendant{REPLACEMENT}2")
        )
    assert sorted(presses, key=lambda r: r[0]) == [
        ("pendant-1", f"sin{REPLACEMENT}gle"),
        ("pendant-3", "single"),
        (f"pendant{REPLACEMENT}2", None),
    ]
    assert plain == "pendant-3"
    assert battery == "NaN"
    assert detail_2 == {f"name{REPLACEMENT}": "x", "battery": "NaN", "temperature": "-Infinity"}


# -- storable() on anything the wire parser can produce ------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
some_text = st.text(alphabet=st.sampled_from(["a", "\x00", "é", "\U0001f4a5"]), min_size=1)


def _walk(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [*value] + [x for v in value.values() for x in _walk(v)]
    if isinstance(value, list):
        return [x for v in value for x in _walk(v)]
    return [value]


@given(
    kind=some_text.filter(lambda t: len(t) <= 64),
    device=some_text.filter(lambda t: len(t) <= 128),
    detail=st.dictionaries(st.text(), json_values, max_size=5),
)
def test_storable_leaves_no_nul_nor_non_finite_number_and_keeps_lengths(
    kind: str, device: str, detail: dict[str, Any]
) -> None:
    event = Event(
        id="ev-00000001",
        kind=kind,
        priority=Priority.CRITICAL,
        device_id=device,
        device_type="alarm_button",
        home_id="home-1",
        occurred_at=datetime.now(UTC),
        detail=detail,
    )
    fixed, reasons = storable(event)
    assert len(fixed.kind) == len(kind) and len(fixed.device_id) == len(device)
    assert fixed.id == event.id and fixed.priority == event.priority
    leaves = [fixed.kind, fixed.device_id, *_walk(fixed.detail)]
    assert not any(isinstance(x, str) and "\x00" in x for x in leaves)
    assert not any(isinstance(x, float) and not math.isfinite(x) for x in leaves)
    json.dumps(fixed.detail, allow_nan=False)  # PostgreSQL's json takes it
    originals = [kind, device, *_walk(detail)]
    had_nul = any(isinstance(x, str) and "\x00" in x for x in originals)
    had_non_finite = any(isinstance(x, float) and not math.isfinite(x) for x in originals)
    assert ("nul_character" in reasons) == had_nul
    assert ("non_finite_number" in reasons) == had_non_finite
    if not reasons:
        assert fixed is event
