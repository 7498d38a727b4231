"""BTHome v2 advertisements as a BLE device sends them, plain and encrypted.

The encryption is the BTHome v2 specification's: AES-CCM with the device's 16-byte
bindkey, a 4-byte message integrity check, and a nonce of the MAC address, the
service UUID (0xFCD2, little-endian), the device-information byte and a 4-byte counter
that the device increments for every advertisement.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from devices.codecs.bthome import BTHOME_UUID

__all__ = ["BINARY", "BTHOME_UUID", "BUTTON_EVENTS", "advertisement", "objects"]

UUID16_LE = bytes.fromhex("d2fc")
_VERSION_2 = 0x40
_ENCRYPTED = 0x01
_TRIGGER_BASED = 0x04

# Object ids (bthome.io/format), the few a home-care device sends.
PACKET_ID = 0x00
BATTERY = 0x01
BUTTON = 0x3A
BINARY = {  # binary sensors, by the name objects() takes: every one BTHome v2 defines
    "generic": 0x0F,
    "power": 0x10,
    "opening": 0x11,
    "battery_low": 0x15,
    "battery_charging": 0x16,
    "carbon_monoxide": 0x17,
    "cold": 0x18,
    "connectivity": 0x19,
    "door": 0x1A,
    "garage_door": 0x1B,
    "gas": 0x1C,
    "heat": 0x1D,
    "light": 0x1E,
    "lock": 0x1F,
    "moisture": 0x20,
    "motion": 0x21,
    "moving": 0x22,
    "occupancy": 0x23,
    "plug": 0x24,
    "presence": 0x25,
    "problem": 0x26,
    "running": 0x27,
    "safety": 0x28,
    "smoke": 0x29,
    "sound": 0x2A,
    "tamper": 0x2B,
    "vibration": 0x2C,
    "window": 0x2D,
}

BUTTON_EVENTS = {"none": 0, "press": 1, "double_press": 2, "triple_press": 3, "long_press": 4}


def objects(
    *,
    packet_id: int | None = None,
    battery: int | None = None,
    button: str | None = None,
    **binary: bool,
) -> bytes:
    """The measurement objects, in the ascending id order the format asks for."""
    out = bytearray()
    if packet_id is not None:
        out += bytes([PACKET_ID, packet_id & 0xFF])
    if battery is not None:
        out += bytes([BATTERY, max(0, min(100, battery))])
    for name, value in sorted(binary.items(), key=lambda item: BINARY[item[0]]):
        out += bytes([BINARY[name], 1 if value else 0])
    if button is not None:
        out += bytes([BUTTON, BUTTON_EVENTS[button]])
    return bytes(out)


def advertisement(
    payload: bytes,
    *,
    trigger_based: bool = False,
    bindkey: bytes | None = None,
    mac: str = "",
    counter: int = 0,
) -> bytes:
    """Service data for UUID 0xFCD2: the device-information byte and the objects,
    encrypted when the device has a bindkey."""
    info = _VERSION_2 | (_TRIGGER_BASED if trigger_based else 0)
    if bindkey is None:
        return bytes([info]) + payload
    if len(bindkey) != 16:
        raise ValueError("a BTHome bindkey is 16 bytes")
    info |= _ENCRYPTED
    count = (counter & 0xFFFFFFFF).to_bytes(4, "little")
    nonce = bytes.fromhex(mac.replace(":", "")) + UUID16_LE + bytes([info]) + count
    sealed = AESCCM(bindkey, tag_length=4).encrypt(nonce, payload, None)
    return bytes([info]) + sealed[:-4] + count + sealed[-4:]
