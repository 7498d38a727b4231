"""What a gateway sends, made storable before it is stored.

The wire schema takes any JSON string and any JSON number a gateway's codecs let
through, but PostgreSQL cannot: a NUL character is refused by every text column and,
inside a ``json`` value, breaks every JSON query over the events table (``->>`` fails on
``\\u0000``); ``NaN`` and ``Infinity`` are not JSON at all, so the event could not be
committed, was never acked, and came back forever. The dispatch service does not trust
gateways to have refused them: it keeps the event, and so the alarm, with each NUL
replaced by U+FFFD (the Unicode replacement character, one character for one, so no
bounded field grows past its column) and each non-finite number by its name as text.
"""

from __future__ import annotations

import math
from typing import Any

from devices import Event

NUL = "\x00"
REPLACEMENT = "\ufffd"
NUL_CHARACTER = "nul_character"
NON_FINITE_NUMBER = "non_finite_number"
_TEXT_FIELDS = ("kind", "device_id", "device_type", "home_id", "resident_id")
_NUMBER_NAMES = {math.inf: "Infinity", -math.inf: "-Infinity"}


class _Found:
    __slots__ = ("reasons",)

    def __init__(self) -> None:
        self.reasons: set[str] = set()

    def text(self, value: str) -> str:
        if NUL not in value:
            return value
        self.reasons.add(NUL_CHARACTER)
        return value.replace(NUL, REPLACEMENT)

    def value(self, value: Any) -> Any:
        # The wire parser bounds nesting (about 200 levels), so recursion is bounded too.
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, float) and not math.isfinite(value):
            self.reasons.add(NON_FINITE_NUMBER)
            return _NUMBER_NAMES.get(value, "NaN")
        if isinstance(value, dict):
            return {self.text(k): self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        return value


def storable(event: Event) -> tuple[Event, frozenset[str]]:
    """``event`` as it can be stored on every backend, and the reasons it had to change
    (empty, and the same event, when nothing had to)."""
    found = _Found()
    update: dict[str, Any] = {}
    for field in _TEXT_FIELDS:
        value = getattr(event, field)
        if value is not None and (fixed := found.text(value)) is not value:
            update[field] = fixed
    detail = found.value(event.detail)
    if found.reasons:
        update["detail"] = detail
        return event.model_copy(update=update), frozenset(found.reasons)
    return event, frozenset()


def storable_json(value: Any) -> tuple[Any, frozenset[str]]:
    """Any JSON value (a gateway's inventory) as it can be stored, and why it changed."""
    found = _Found()
    fixed = found.value(value)
    return fixed, frozenset(found.reasons)
