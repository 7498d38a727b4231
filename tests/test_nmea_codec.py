"""NMEA 0183 against the real receiver captures in shared/data/nmea (gpsd test logs)."""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices import CodecError, MalformedPayload
from devices.codecs.nmea import GpsFix, NmeaLineReader, decode_sentence, encode_sentence

from .conftest import SHARED_DATA

NMEA = SHARED_DATA / "nmea"

# Per the provenance README: sentences / bad checksum / no checksum.
COUNTS = {
    "bu353s4.log": (90, 0, 0),
    "holux-gm-210.log": (40, 0, 1),
    "garmin-10x.log": (84, 0, 0),
    "com-1289.log": (98, 1, 0),
    "triton400.log": (28, 1, 0),
    "bu353-glonass.log": (112, 0, 0),
}


def sentences(path: Path) -> list[bytes]:
    return [
        line.rstrip(b"\r\n")
        for line in path.read_bytes().split(b"\n")
        if line.strip() and not line.startswith(b"#")
    ]


def decode_all(lines: list[bytes]) -> tuple[list[GpsFix | None], list[str]]:
    results: list[GpsFix | None] = []
    errors: list[str] = []
    for line in lines:
        try:
            results.append(decode_sentence(line))
        except MalformedPayload as exc:
            errors.append(str(exc))
    return results, errors


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_every_capture_decodes_as_its_provenance_says(name: str) -> None:
    total, bad_checksum, no_checksum = COUNTS[name]
    lines = sentences(NMEA / name)
    assert len(lines) == total
    results, errors = decode_all(lines)
    assert len(results) == total - bad_checksum - no_checksum
    assert sum("does not match" in e or "run together" in e for e in errors) == bad_checksum
    assert sum("no checksum" in e for e in errors) == no_checksum


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_random_chunking_gives_the_same_sentences(name: str) -> None:
    data = (NMEA / name).read_bytes()
    rng = random.Random(name)
    reader = NmeaLineReader()
    out: list[bytes] = []
    i = 0
    while i < len(data):
        step = rng.randint(1, 40)
        out.extend(reader.feed(data[i : i + step]))
        i += step
    assert [line for line in out if not line.startswith(b"#")] == sentences(NMEA / name)


def test_a_clean_fix_in_the_southern_and_eastern_hemispheres() -> None:
    fixes = [f for f in decode_all(sentences(NMEA / "bu353s4.log"))[0] if f is not None]
    assert fixes and all(f.valid for f in fixes)
    gga = next(f for f in fixes if f.sentence == "GGA")
    assert gga.latitude is not None and gga.latitude < 0
    assert gga.longitude is not None and gga.longitude > 0
    assert gga.satellites and gga.satellites > 3


def test_no_fix_throughout() -> None:
    fixes = [f for f in decode_all(sentences(NMEA / "holux-gm-210.log"))[0] if f is not None]
    assert fixes and not any(f.valid for f in fixes)


def test_fix_lost_and_regained_in_order() -> None:
    fixes = [f for f in decode_all(sentences(NMEA / "garmin-10x.log"))[0] if f is not None]
    validity = [f.valid for f in fixes]
    first_lost = validity.index(False)
    last_lost = len(validity) - 1 - validity[::-1].index(False)
    assert all(validity[:first_lost]) and all(validity[last_lost + 1 :])
    assert first_lost > 0 and last_lost < len(validity) - 1
    assert fixes[0].longitude is not None and fixes[0].longitude < 0  # western hemisphere


def test_multi_constellation_talkers() -> None:
    fixes = [f for f in decode_all(sentences(NMEA / "bu353-glonass.log"))[0] if f is not None]
    assert any(f.valid for f in fixes) and any(not f.valid for f in fixes)


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"GPGGA,1*00",
        b"$GPGGA,030130$GPGLL,4916.45,N,12311.12,W*41",
        b"$GPRMC,1,A,99x9.1,N,00000.0,E,0.0,,010100,,*"
        + encode_sentence("GPRMC,1,A,99x9.1,N,00000.0,E,0.0,,010100,,")[-4:-2],
        b"$\xff\xfe*00",
        b"$GP" + b"A" * 200 + b"*00",
        b"$GPGGA,1,2*",
    ],
)
def test_garbage_is_a_codec_error(line: bytes) -> None:
    with pytest.raises(MalformedPayload):
        decode_sentence(line)


def test_line_noise_without_line_ends_is_bounded() -> None:
    reader = NmeaLineReader()
    for _ in range(100):
        assert reader.feed(b"x" * 100) == []
    assert reader.overlong > 0
    assert reader.feed(b"\n" + encode_sentence("GPGSA,A,1,,,,,,,,,,,,,50.0,50.0,50.0")) != []


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_codec_errors(data: bytes) -> None:
    with contextlib.suppress(CodecError):
        decode_sentence(data)
    NmeaLineReader().feed(data)


@given(
    st.floats(min_value=-89.99, max_value=89.99),
    st.floats(min_value=-179.99, max_value=179.99),
    st.integers(min_value=0, max_value=24),
)
def test_encode_decode_round_trip(lat: float, lon: float, sats: int) -> None:
    def ddmm(value: float, width: int) -> str:
        degrees = int(abs(value))
        minutes = (abs(value) - degrees) * 60
        return f"{degrees:0{width}d}{minutes:07.4f}"

    body = (
        f"GPGGA,120000.00,{ddmm(lat, 2)},{'N' if lat >= 0 else 'S'},{ddmm(lon, 3)},"
        f"{'E' if lon >= 0 else 'W'},1,{sats:02d},0.9,10.0,M,0.0,M,,"
    )
    fix = decode_sentence(encode_sentence(body))
    assert fix is not None and fix.valid and fix.satellites == sats
    assert fix.latitude == pytest.approx(lat, abs=1e-5)
    assert fix.longitude == pytest.approx(lon, abs=1e-5)
