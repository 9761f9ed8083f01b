"""Incremental speech-body decoders, on real espeak-ng speech encoded by PyAV."""

from __future__ import annotations

import functools
import io
import random
import struct

import av
import numpy as np
import pytest
from audio_samples import speech_native

from assistant.audio.decoders import (
    SNIFF_BYTES,
    BufferedContainerDecoder,
    CompressedStreamDecoder,
    OggStreamDecoder,
    PcmChunk,
    PcmStreamDecoder,
    SniffingDecoder,
    StreamDecoder,
    WavStreamDecoder,
    make_decoder,
)
from assistant.audio.resample import resample_once
from assistant.audio.wav import AudioFormatError, encode_wav

TEXT = "Hello there. This is the decoder test, with one sentence long enough to matter."
LONG_TEXT = " ".join(
    [
        "This is a much longer answer, read slowly, so that the encoded body is large.",
        "It goes on about the weather, the news, and the state of the garden.",
        "Then it talks about what to cook tonight and how long it will take.",
    ]
)

# (container format, codec, codec rate or None for the source rate)
ENCODINGS: dict[str, tuple[str, str, int | None]] = {
    "mp3": ("mp3", "libmp3lame", None),
    "aac": ("adts", "aac", None),
    "flac": ("flac", "flac", None),
    "opus": ("ogg", "libopus", 48_000),
    "vorbis": ("ogg", "vorbis", None),
    "m4a": ("ipod", "aac", None),
    "webm": ("webm", "libopus", 48_000),
}
FRAME_SAMPLES = {"mp3": 1152, "aac": 1024, "flac": 4608, "opus": 960, "vorbis": 2048, "wav": 1}
"""A codec frame, in samples at its rate: the unit of the duration tolerance."""


def source() -> tuple[np.ndarray, int]:
    return speech_native(TEXT)


@functools.cache
def encode(kind: str, text: str = TEXT, channels: int = 1) -> bytes:
    """`text` spoken by espeak-ng, encoded by PyAV (ID3 tag and all, as muxers write it)."""
    samples, rate = speech_native(text)
    if kind == "wav":
        return encode_wav(np.asarray(samples), rate)
    container_format, codec, codec_rate = ENCODINGS[kind]
    if kind == "vorbis":
        channels = 2  # FFmpeg's own Vorbis encoder only does stereo.
    layout = "mono" if channels == 1 else "stereo"
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=codec_rate or rate, layout=layout)
        stream.codec_context.options = {"strict": "experimental"}
        interleaved = np.repeat(samples, channels).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(interleaved, format="s16", layout=layout)
        frame.sample_rate = rate
        converter = av.AudioResampler(
            format=stream.codec_context.format.name, layout=layout, rate=codec_rate or rate
        )
        for converted in [*converter.resample(frame), *converter.resample(None)]:
            for packet in stream.encode(converted):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def split(body: bytes, size: int | str) -> list[bytes]:
    if size == "random":
        rng = random.Random(len(body))
        pieces, pos = [], 0
        while pos < len(body):
            step = rng.choice([1, 2, 3, 50, 333, 1000, 4096, 20_000])
            pieces.append(body[pos : pos + step])
            pos += step
        return pieces
    assert isinstance(size, int)
    return [body[i : i + size] for i in range(0, len(body), size)]


def decode(decoder: StreamDecoder, pieces: list[bytes]) -> list[PcmChunk]:
    out: list[PcmChunk] = []
    for piece in pieces:
        out += decoder.feed(piece)
    return out + decoder.close()


def joined(chunks: list[PcmChunk]) -> tuple[np.ndarray, int]:
    rates = {c.sample_rate for c in chunks}
    assert len(rates) == 1, rates
    assert all(c.samples.dtype == np.int16 and c.samples.ndim == 1 for c in chunks)
    return np.concatenate([c.samples for c in chunks]), rates.pop()


def best_correlation(reference: np.ndarray, candidate: np.ndarray, max_lag: int = 4000) -> float:
    """Correlation coefficient of `candidate` with `reference` at the best lag (codec delay)."""
    return best_alignment(reference, candidate, max_lag)[1]


def best_alignment(
    reference: np.ndarray, candidate: np.ndarray, max_lag: int = 4000
) -> tuple[int, float]:
    """(lag of `candidate` behind `reference`, correlation coefficient at that lag)."""
    a = reference.astype(np.float64)
    b = candidate.astype(np.float64)
    size = 1 << (len(a) + len(b)).bit_length()
    xcorr = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)
    lags = np.r_[0 : max_lag + 1, -max_lag:0]
    lag = int(lags[np.argmax(xcorr[lags])])
    a, b = (a, b[lag:]) if lag >= 0 else (a[-lag:], b)
    n = min(len(a), len(b))
    return lag, float(np.corrcoef(a[:n], b[:n])[0, 1])


# ---------------------------------------------------------- every format


STREAMED = ["wav", "mp3", "aac", "flac", "opus", "vorbis"]
MIN_CORRELATION = {"wav": 0.999, "flac": 0.999, "mp3": 0.8, "aac": 0.8, "opus": 0.8, "vorbis": 0.8}


@pytest.mark.parametrize("size", [1, 7, 1024, "random"])
@pytest.mark.parametrize("kind", STREAMED)
def test_streamed_formats_decode_in_any_chunking(kind: str, size: int | str) -> None:
    body = encode(kind)
    decoder = make_decoder(None, body[:SNIFF_BYTES])
    samples, rate = joined(decode(decoder, split(body, size)))
    src, src_rate = source()
    expected = len(src) * rate / src_rate
    assert abs(len(samples) - expected) <= 2 * FRAME_SAMPLES[kind], (len(samples), expected)
    at_source_rate = resample_once(samples, rate, src_rate)
    assert best_correlation(src, at_source_rate) > MIN_CORRELATION[kind]


@pytest.mark.parametrize("kind", STREAMED)
def test_chunking_does_not_change_the_output(kind: str) -> None:
    body = encode(kind)
    whole, _ = joined(decode(make_decoder(None, body), [body]))
    for size in (7, "random"):
        pieces, _ = joined(decode(make_decoder(None, body), split(body, size)))
        np.testing.assert_array_equal(pieces, whole)


@pytest.mark.parametrize("kind", ["m4a", "webm"])
def test_buffered_containers_decode_at_close(kind: str) -> None:
    body = encode(kind)
    decoder = make_decoder(None, body[:SNIFF_BYTES])
    assert isinstance(decoder, BufferedContainerDecoder)
    assert all(decoder.feed(piece) == [] for piece in split(body, 1024))
    samples, rate = joined(decoder.close())
    src, src_rate = source()
    assert abs(len(samples) / rate - len(src) / src_rate) < 0.1
    assert best_correlation(src, resample_once(samples, rate, src_rate)) > 0.8


# ------------------------------------------------------------- latency


def first_output_offset(decoder: StreamDecoder, body: bytes, size: int = 1024) -> int:
    for offset in range(0, len(body), size):
        if decoder.feed(body[offset : offset + size]):
            return offset + size
    raise AssertionError("no output before the end of the body")


@pytest.mark.parametrize(("kind", "limit"), [("mp3", 4096), ("aac", 4096), ("wav", 1024)])
def test_first_chunk_after_the_first_few_kilobytes(kind: str, limit: int) -> None:
    body = encode(kind, LONG_TEXT)
    assert len(body) > 40_000
    assert first_output_offset(make_decoder(None, body[:SNIFF_BYTES]), body) <= limit


@pytest.mark.parametrize("kind", ["opus", "vorbis", "flac"])
def test_page_and_lookahead_formats_still_stream(kind: str) -> None:
    body = encode(kind, LONG_TEXT)
    # Ogg releases audio page by page; FFmpeg's FLAC parser looks ~10 frames ahead.
    assert first_output_offset(make_decoder(None, body[:SNIFF_BYTES]), body) < len(body) // 2


# ------------------------------------------------------------ WAV/PCM


def wav_body(payload: bytes, fmt: bytes, extra_before: bytes = b"", after: bytes = b"") -> bytes:
    data = b"data" + struct.pack("<I", len(payload)) + payload
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra_before + data + after
    return b"RIFF" + struct.pack("<I", len(body)) + body


def fmt(tag: int, channels: int, rate: int, bits: int) -> bytes:
    align = channels * bits // 8
    return struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)


VALUES = np.array([0, 1, -1, 256, -256, 12_345, -12_345, 32_767, -32_768, 1000], dtype=np.int16)


@pytest.mark.parametrize(
    ("tag", "bits", "payload", "tolerance"),
    [
        (1, 16, VALUES.astype("<i2").tobytes(), 0),
        (1, 8, ((VALUES >> 8) + 128).astype(np.uint8).tobytes(), 255),
        (
            1,
            24,
            b"".join((int(v) * 256 + 17).to_bytes(3, "little", signed=True) for v in VALUES),
            0,
        ),
        (1, 32, (VALUES.astype("<i4") * 65536 + 999).tobytes(), 0),
        (3, 32, (VALUES / 32768.0).astype("<f4").tobytes(), 1),
        (3, 64, (VALUES / 32768.0).astype("<f8").tobytes(), 1),
    ],
)
def test_wav_sample_formats(tag: int, bits: int, payload: bytes, tolerance: int) -> None:
    body = wav_body(payload, fmt(tag, 1, 8000, bits))
    samples, rate = joined(decode(WavStreamDecoder(), split(body, 5)))
    assert rate == 8000
    assert np.abs(samples.astype(np.int32) - VALUES).max() <= tolerance


def test_wav_stereo_is_averaged_to_mono() -> None:
    left = VALUES
    right = np.zeros_like(VALUES)
    payload = np.column_stack([left, right]).astype("<i2").tobytes()
    samples, _ = joined(
        decode(WavStreamDecoder(), split(wav_body(payload, fmt(1, 2, 16000, 16)), 3))
    )
    np.testing.assert_array_equal(samples, (left.astype(np.int32) // 2).astype(np.int16))


def test_wav_extensible_header_split_at_every_byte() -> None:
    ext = fmt(0xFFFE, 1, 24_000, 16) + struct.pack("<HHI", 22, 16, 4) + b"\x01\x00" + bytes(14)
    body = wav_body(VALUES.tobytes(), ext, extra_before=b"LIST\x04\x00\x00\x00INFO")
    for cut in range(len(body)):
        samples, rate = joined(decode(WavStreamDecoder(), [body[:cut], body[cut:]]))
        assert rate == 24_000
        np.testing.assert_array_equal(samples, VALUES)


def test_wav_chunks_after_data_are_not_played() -> None:
    body = wav_body(VALUES.tobytes(), fmt(1, 1, 16000, 16), after=b"LIST\x04\x00\x00\x00abcd")
    samples, _ = joined(decode(WavStreamDecoder(), split(body, 7)))
    np.testing.assert_array_equal(samples, VALUES)


def test_wav_streaming_header_reads_to_the_end() -> None:
    body = bytearray(wav_body(VALUES.tobytes(), fmt(1, 1, 22050, 16)))
    body[40:44] = struct.pack("<I", 0x7FFF_F000)
    samples, _ = joined(decode(WavStreamDecoder(), split(bytes(body), 3)))
    np.testing.assert_array_equal(samples, VALUES)


def test_pcm_odd_bytes_are_carried() -> None:
    raw = VALUES.astype("<i2").tobytes()
    decoder = PcmStreamDecoder()
    out = decode(decoder, split(raw, 3))
    samples, rate = joined(out)
    assert rate == 24_000
    np.testing.assert_array_equal(samples, VALUES)
    assert decoder.feed(b"\x01") == []
    assert decoder.close() == []


def test_pcm_stereo_and_big_endian() -> None:
    stereo = np.column_stack([VALUES, VALUES]).astype(">i2").tobytes()
    decoder = PcmStreamDecoder(sample_rate=16_000, channels=2, big_endian=True)
    samples, rate = joined(decode(decoder, split(stereo, 3)))
    assert rate == 16_000
    np.testing.assert_array_equal(samples, VALUES)


def test_empty_bodies_give_nothing() -> None:
    for decoder in (WavStreamDecoder(), PcmStreamDecoder(), CompressedStreamDecoder("mp3")):
        assert decoder.close() == []
    assert OggStreamDecoder().close() == []
    assert BufferedContainerDecoder().close() == []


# ------------------------------------------------------- stereo / codecs


def test_stereo_flac_is_mixed_to_mono_losslessly() -> None:
    body = encode("flac", channels=2)
    samples, rate = joined(decode(make_decoder("audio/flac", body), split(body, 1000)))
    src, src_rate = source()
    assert rate == src_rate
    np.testing.assert_array_equal(samples, src)


def test_stereo_mp3_is_mixed_to_mono() -> None:
    body = encode("mp3", channels=2)
    samples, rate = joined(decode(make_decoder("audio/mpeg", body), split(body, 1000)))
    src, src_rate = source()
    assert best_correlation(src, resample_once(samples, rate, src_rate)) > 0.8


def test_truncated_mp3_plays_what_arrived() -> None:
    body = encode("mp3")
    half, _ = joined(decode(make_decoder("audio/mpeg", body), [body[: len(body) // 2 + 77]]))
    full, _ = joined(decode(make_decoder("audio/mpeg", body), [body]))
    assert 0.4 * len(full) < len(half) < 0.6 * len(full)
    np.testing.assert_array_equal(half[: len(half) - 2 * 1152], full[: len(half) - 2 * 1152])


def last_granule(ogg: bytes) -> int:
    pos = granule = 0
    while pos < len(ogg):
        granule = int.from_bytes(ogg[pos + 6 : pos + 14], "little", signed=True)
        pos += 27 + ogg[pos + 26] + sum(ogg[pos + 27 : pos + 27 + ogg[pos + 26]])
    return granule


def strip_id3(mp3: bytes) -> bytes:
    return mp3[10 + sum((mp3[6 + i] & 0x7F) << (7 * (3 - i)) for i in range(4)) :]


def test_mp3_info_frame_and_encoder_delay_are_trimmed() -> None:
    body = encode("mp3")
    samples, rate = joined(decode(make_decoder(None, body), split(body, 1000)))
    src, src_rate = source()
    assert rate == src_rate
    lag, correlation = best_alignment(src, samples)
    # Speech starts at sample 0, as in the source: no silent frame, no codec delay.
    assert abs(lag) <= 1 and correlation > 0.8
    assert len(src) <= len(samples) < len(src) + FRAME_SAMPLES["mp3"]


def test_mp3_without_info_frame() -> None:
    bare = strip_id3(encode("mp3"))
    assert bare[13:17] == b"Info"
    info_frame = av.CodecContext.create("mp3", "r").parse(bare)[0]
    no_info = bare[info_frame.size :]
    samples, _ = joined(decode(make_decoder("audio/mpeg", no_info), split(no_info, 1000)))
    src, _ = source()
    lag, correlation = best_alignment(src, samples)
    assert correlation > 0.8
    assert 0 < lag < 2 * FRAME_SAMPLES["mp3"]  # encoder and decoder delay left in


def test_opus_pre_skip_and_end_trim() -> None:
    body = encode("opus")
    pre_skip = int.from_bytes(body[28 + 10 : 28 + 12], "little")
    assert pre_skip > 0
    chunks = decode(OggStreamDecoder(), split(body, 999))
    samples, rate = joined(chunks)
    assert rate == 48_000
    # Exactly the signal the stream declares: pre-skip cut at the start, padding at the end.
    assert len(samples) == last_granule(body) - pre_skip
    # The first packet is one 20 ms frame minus the pre-skip (cut once, not twice).
    assert len(chunks[0].samples) == 960 - pre_skip
    src, src_rate = source()
    assert abs(len(samples) - len(src) * rate / src_rate) < FRAME_SAMPLES["opus"]


# ------------------------------------------------------------ corruption


GARBAGE = random.Random(5).randbytes(30_000)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("audio/mpeg", GARBAGE),
        ("audio/aac", GARBAGE),
        ("audio/flac", b"fLaC" + GARBAGE),
        ("audio/ogg", b"OggS" + GARBAGE),
        ("audio/wav", b"RIFX" + GARBAGE),
        ("audio/mp4", b"\x00\x00\x00\x18ftypM4A " + GARBAGE),
        ("audio/webm", b"\x1a\x45\xdf\xa3" + GARBAGE),
        (None, b"ID3\x04\x00\x00\x00\x00\x00\x10" + bytes(16) + GARBAGE),
    ],
)
def test_garbage_raises_audio_format_error(content_type: str | None, body: bytes) -> None:
    with pytest.raises(AudioFormatError):
        decode(make_decoder(content_type, body), split(body, 1000))


@pytest.mark.parametrize("kind", ["mp3", "aac", "flac", "opus", "vorbis"])
def test_real_header_then_garbage_raises(kind: str) -> None:
    body = encode(kind)[:200] + GARBAGE
    with pytest.raises(AudioFormatError):
        decode(make_decoder(None, body), split(body, 1000))


def test_ogg_with_unknown_codec_raises() -> None:
    body = encode("opus")
    page_body_start = 27 + body[26]
    speex = body[:page_body_start] + b"Speex   " + body[page_body_start + 8 :]
    with pytest.raises(AudioFormatError):
        decode(OggStreamDecoder(), [speex])


def test_ogg_lost_sync_raises() -> None:
    body = encode("opus")
    with pytest.raises(AudioFormatError):
        decode(OggStreamDecoder(), [body[:5000] + b"\x00" * 10 + body[5000:]])


def test_truncated_wav_header_raises_at_close() -> None:
    decoder = WavStreamDecoder()
    assert decoder.feed(encode("wav")[:30]) == []
    with pytest.raises(AudioFormatError):
        decoder.close()


def test_unknown_codec_name_raises() -> None:
    with pytest.raises(AudioFormatError):
        CompressedStreamDecoder("no-such-codec")


# ----------------------------------------------------------- choosing


@pytest.mark.parametrize(
    ("content_type", "kind", "expected"),
    [
        ("audio/mpeg", "mp3", CompressedStreamDecoder),
        ("audio/mp3", "mp3", CompressedStreamDecoder),
        ("audio/wav", "wav", WavStreamDecoder),
        ("audio/x-wav", "wav", WavStreamDecoder),
        ("audio/wave", "wav", WavStreamDecoder),
        ("audio/flac", "flac", CompressedStreamDecoder),
        ("audio/aac", "aac", CompressedStreamDecoder),
        ("audio/ogg", "opus", OggStreamDecoder),
        ("audio/opus", "opus", OggStreamDecoder),
        ("audio/ogg; codecs=vorbis", "vorbis", OggStreamDecoder),
        ("audio/mp4", "m4a", BufferedContainerDecoder),
        ("audio/webm", "webm", BufferedContainerDecoder),
        ("application/octet-stream", "mp3", CompressedStreamDecoder),
        ("application/octet-stream", "aac", CompressedStreamDecoder),
        ("application/octet-stream", "wav", WavStreamDecoder),
        (None, "flac", CompressedStreamDecoder),
        (None, "opus", OggStreamDecoder),
        ("AUDIO/MPEG; charset=binary", "mp3", CompressedStreamDecoder),
    ],
)
def test_make_decoder_by_type_or_magic(content_type: str | None, kind: str, expected: type) -> None:
    assert isinstance(make_decoder(content_type, encode(kind)[:SNIFF_BYTES]), expected)


def test_magic_beats_a_wrong_content_type() -> None:
    # Older Dify labels every TTS body audio/mpeg.
    decoder = make_decoder("audio/mpeg", encode("wav")[:SNIFF_BYTES])
    assert isinstance(decoder, WavStreamDecoder)


def test_sync_bytes_without_id3() -> None:
    bare = strip_id3(encode("mp3"))
    decoder = make_decoder(None, bare[:SNIFF_BYTES])
    assert isinstance(decoder, CompressedStreamDecoder) and decoder.codec_name == "mp3"
    adts = make_decoder(None, encode("aac")[:SNIFF_BYTES])
    assert isinstance(adts, CompressedStreamDecoder) and adts.codec_name == "aac"


def test_raw_pcm_types_and_parameters() -> None:
    decoder = make_decoder("audio/L16; rate=16000; channels=2", b"\x00\x01\x00\x01")
    assert isinstance(decoder, PcmStreamDecoder) and decoder.sample_rate == 16_000
    samples, _ = joined(decoder.feed(b"\x00\x02\x00\x04"))  # big-endian per RFC 2586
    assert samples.tolist() == [3]
    pcm = make_decoder("audio/pcm", b"")
    assert isinstance(pcm, PcmStreamDecoder) and pcm.sample_rate == 24_000


def test_requested_format_decides_octet_stream() -> None:
    raw = VALUES.tobytes()
    decoder = make_decoder("application/octet-stream", raw[:SNIFF_BYTES], requested_format="pcm")
    assert isinstance(decoder, PcmStreamDecoder)
    opus = make_decoder("application/octet-stream", b"", requested_format="opus")
    assert isinstance(opus, OggStreamDecoder)


def test_unrecognised_body_raises() -> None:
    with pytest.raises(AudioFormatError):
        make_decoder("application/octet-stream", b"<html>oops</html>")
    with pytest.raises(AudioFormatError):
        make_decoder(None, b"")


@pytest.mark.parametrize("kind", ["mp3", "wav", "opus"])
def test_sniffing_decoder_one_byte_at_a_time(kind: str) -> None:
    body = encode(kind)
    expected, _ = joined(decode(make_decoder(None, body), [body]))
    got, _ = joined(decode(SniffingDecoder(None), split(body, 1)))
    np.testing.assert_array_equal(got, expected)


def test_sniffing_decoder_short_body() -> None:
    decoder = SniffingDecoder("audio/pcm")
    assert decoder.feed(b"\x01\x00\x02") == []
    samples, _ = joined(decoder.close())
    assert samples.tolist() == [1]
    assert SniffingDecoder(None).close() == []
