"""The codec error hierarchy: every codec raises only these for bad input."""


class CodecError(ValueError):
    """Input a codec cannot turn into readings or events."""


class MalformedPayload(CodecError):
    """Not the encoding the codec speaks (bad JSON, wrong framing, bad checksum)."""


class UnexpectedValue(CodecError):
    """Well-formed, but a known field carries a value of the wrong type or range."""


class Replayed(CodecError):
    """Authentic, but older than a message already accepted from the device: a replay
    of a captured encrypted advertisement (its counter went back)."""


class Repeated(CodecError):
    """Nothing new: the device's last message again (a radio retransmission)."""
