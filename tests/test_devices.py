from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from devices import CATALOG, EVENT_KINDS, DeviceType, Event, Priority, Signal, stable_event_id


def test_priorities_sort_most_urgent_first() -> None:
    ordered = sorted(Priority, key=lambda p: p.rank)
    assert ordered == [Priority.CRITICAL, Priority.HIGH, Priority.NORMAL, Priority.LOW]
    scaip = [p.scaip for p in ordered]
    assert scaip == sorted(scaip), "a more urgent priority has a lower SCAIP number"
    assert all(0 <= n <= 9 for n in scaip)


def test_every_device_type_is_in_the_catalog() -> None:
    assert set(CATALOG) == set(DeviceType)
    for spec in CATALOG.values():
        assert spec.checkin.total_seconds() > 0
        for signal, kind in spec.alarms.items():
            assert isinstance(signal, Signal)
            assert kind in EVENT_KINDS, f"{spec.type}: unknown event kind {kind}"


@pytest.mark.parametrize(
    ("kind", "priority"),
    [
        ("alarm_button", Priority.CRITICAL),
        ("fall", Priority.CRITICAL),
        ("smoke", Priority.CRITICAL),
        ("co", Priority.CRITICAL),
        ("resident_not_seen", Priority.CRITICAL),
        ("geofence_exit", Priority.HIGH),
        ("door_open_night", Priority.HIGH),
        ("bed_exit_no_return", Priority.HIGH),
        ("inactivity", Priority.HIGH),
        ("device_silent", Priority.NORMAL),
        ("battery_low", Priority.NORMAL),
        ("lock_jammed", Priority.NORMAL),
        ("gateway_offline", Priority.NORMAL),
        ("lock_opened", Priority.LOW),
        ("check_done", Priority.LOW),
    ],
)
def test_event_kinds_follow_the_architecture_priorities(kind: str, priority: Priority) -> None:
    assert EVENT_KINDS[kind].priority is priority
    assert 100 <= EVENT_KINDS[kind].contact_id <= 999


def test_alarm_button_press_is_critical_in_the_catalog() -> None:
    kind = CATALOG[DeviceType.ALARM_BUTTON].event_kind(Signal.BUTTON_PRESS)
    assert kind is not None and kind.priority is Priority.CRITICAL and kind.contact_id == 101
    assert CATALOG[DeviceType.DOOR_CONTACT].event_kind(Signal.DOOR_OPEN) is None


def _event(**changes: object) -> Event:
    fields: dict[str, object] = {
        "id": "ev-0123456789",
        "kind": "alarm_button",
        "priority": "critical",
        "device_id": "pendant-1",
        "device_type": "alarm_button",
        "home_id": "home-1",
        "occurred_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    fields.update(changes)
    return Event.model_validate(fields)


def test_event_rejects_naive_timestamps_and_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="time zone"):
        _event(occurred_at=datetime(2026, 1, 1))
    with pytest.raises(ValidationError, match="Extra inputs"):
        _event(colour="red")
    with pytest.raises(ValidationError):
        _event(id="bad id with spaces")


def test_event_round_trips_through_json() -> None:
    event = _event(detail={"action": "single"})
    assert Event.model_validate_json(event.model_dump_json()) == event


def test_stable_event_id_is_stable_and_distinct() -> None:
    a = stable_event_id("gw", "boot", "1")
    assert a == stable_event_id("gw", "boot", "1")
    assert a != stable_event_id("gw", "boot", "2")
    assert a != stable_event_id("gw", "boot1", "")  # separators keep parts apart
    _event(id=a)  # and it is a valid event id
