"""Codecs: bytes or JSON from a device into `Decoded` observations, and back."""

from .common import Decoded, SignalState
from .zigbee2mqtt import decode_action, decode_availability, decode_state, encode_state

__all__ = [
    "Decoded",
    "SignalState",
    "decode_action",
    "decode_availability",
    "decode_state",
    "encode_state",
]
