"""WAV writing and header parsing."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import wave

import numpy as np
import pytest

from assistant.audio.wav import (
    MAX_HEADER_BYTES,
    AudioFormatError,
    WavHeader,
    encode_wav,
    parse_wav_header,
)


def fmt_chunk(
    tag: int = 1, channels: int = 1, rate: int = 16_000, bits: int = 16, sub_tag: int | None = None
) -> bytes:
    align = channels * bits // 8
    body = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    if sub_tag is not None:
        guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        body += struct.pack("<HHI", 22, bits, 0x4) + struct.pack("<H", sub_tag) + guid_tail
    return b"fmt " + struct.pack("<I", len(body)) + body


def riff(*chunks: bytes, riff_size: int | None = None) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body) if riff_size is None else riff_size) + body


def data_chunk(payload: bytes, size: int | None = None) -> bytes:
    return b"data" + struct.pack("<I", len(payload) if size is None else size) + payload


def test_encode_wav_reads_back_with_stdlib() -> None:
    samples = (np.sin(np.arange(1600) / 10) * 20_000).astype(np.int16)
    data = encode_wav(samples, 16_000)
    with wave.open(io.BytesIO(data)) as reader:
        assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (
            1,
            2,
            16_000,
        )
        back = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")
    np.testing.assert_array_equal(back, samples)
    assert parse_wav_header(data) == WavHeader(16_000, 1, 16, False, 44, 3200)


def test_encode_wav_rejects_non_int16() -> None:
    with pytest.raises(TypeError):
        encode_wav(np.zeros(10, dtype=np.float32), 16_000)
    with pytest.raises(TypeError):
        encode_wav(np.zeros((2, 10), dtype=np.int16), 16_000)


def test_encode_empty() -> None:
    header = parse_wav_header(encode_wav(np.zeros(0, dtype=np.int16), 8_000))
    assert header is not None and header.sample_rate == 8_000 and header.data_size is None


def test_every_prefix_of_the_header_needs_more() -> None:
    data = riff(
        fmt_chunk(), b"LIST" + struct.pack("<I", 5) + b"INFO\x00\x00", data_chunk(b"\x01\x00")
    )
    offset = len(data) - 2
    for cut in range(offset):
        assert parse_wav_header(data[:cut]) is None, cut
    header = parse_wav_header(data[:offset])
    # LIST has an odd size, so a pad byte follows it before `data`.
    assert header == WavHeader(16_000, 1, 16, False, offset, 2)
    assert data[header.data_offset :] == b"\x01\x00"


def test_streaming_sizes_mean_unknown() -> None:
    for size in (0, 0x7FFF_FFFF, 0xFFFF_FFFF):
        data = riff(fmt_chunk(), data_chunk(b"", size=size), riff_size=size)
        header = parse_wav_header(data)
        assert header is not None and header.data_size is None


def test_espeak_streaming_header() -> None:
    exe = shutil.which("espeak-ng")
    assert exe is not None
    out = subprocess.run([exe, "--stdout", "-v", "en", "--", "hi"], capture_output=True, check=True)
    header = parse_wav_header(out.stdout)
    assert header is not None
    assert (header.sample_rate, header.channels, header.bits, header.data_offset) == (
        22_050,
        1,
        16,
        44,
    )
    assert header.data_size is None


@pytest.mark.parametrize(
    ("tag", "bits", "sub_tag", "is_float"),
    [(1, 8, None, False), (1, 24, None, False), (1, 32, None, False), (3, 32, None, True),
     (3, 64, None, True), (0xFFFE, 16, 1, False), (0xFFFE, 24, 1, False), (0xFFFE, 32, 3, True)],
)  # fmt: skip
def test_sample_formats(tag: int, bits: int, sub_tag: int | None, is_float: bool) -> None:
    data = riff(
        fmt_chunk(tag=tag, channels=2, rate=44_100, bits=bits, sub_tag=sub_tag), data_chunk(b"")
    )
    header = parse_wav_header(data)
    assert header is not None
    assert (header.channels, header.sample_rate, header.bits, header.is_float) == (
        2,
        44_100,
        bits,
        is_float,
    )
    assert header.block_align == 2 * bits // 8


def test_rf64_is_read_to_the_end() -> None:
    ds64 = b"ds64" + struct.pack("<I", 28) + bytes(28)
    data = (
        b"RF64" + b"\xff\xff\xff\xff" + b"WAVE" + ds64 + fmt_chunk() + data_chunk(b"", 0xFFFF_FFFF)
    )
    header = parse_wav_header(data)
    assert header is not None and header.data_size is None


@pytest.mark.parametrize(
    "data",
    [
        b"OggS\x00\x02" + bytes(30),
        b"ID3",
        b"RIFF\x10\x00\x00\x00AVI LIST",
        riff(fmt_chunk(tag=0x55), data_chunk(b"")),  # MP3 inside WAV
        riff(fmt_chunk(tag=0x11), data_chunk(b"")),  # IMA ADPCM
        riff(fmt_chunk(bits=12), data_chunk(b"")),
        riff(fmt_chunk(tag=3, bits=16), data_chunk(b"")),
        riff(fmt_chunk(tag=0xFFFE, sub_tag=2), data_chunk(b"")),
        riff(fmt_chunk(channels=0), data_chunk(b"")),
        riff(data_chunk(b"\x00\x00"), fmt_chunk()),
        riff(b"fmt " + struct.pack("<I", 8) + bytes(8), data_chunk(b"")),
    ],
)
def test_bad_headers_raise(data: bytes) -> None:
    with pytest.raises(AudioFormatError):
        parse_wav_header(data)


def test_huge_chunk_before_data_raises_instead_of_buffering() -> None:
    big = b"junk" + struct.pack("<I", MAX_HEADER_BYTES * 4)
    with pytest.raises(AudioFormatError):
        parse_wav_header(riff(fmt_chunk(), big))


def test_missing_data_chunk_gives_up_after_limit() -> None:
    pad = MAX_HEADER_BYTES // 2
    filler = b"junk" + struct.pack("<I", pad) + bytes(pad)
    data = riff(fmt_chunk(), filler, filler)
    with pytest.raises(AudioFormatError):
        parse_wav_header(data + bytes(16))


def test_audio_format_error_is_a_value_error() -> None:
    assert issubclass(AudioFormatError, ValueError)
