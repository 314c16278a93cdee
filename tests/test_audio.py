"""Audio input: every accepted form decodes to the same thing; every bad input gets one clear error."""
from __future__ import annotations


import numpy as np
import pytest
import soundfile as sf
import torch

from wavbrivl.audio import AudioClip, AudioError, AudioFrontEnd, FrontEndConfig, iter_windows, load_audio

from .conftest import tone, write_wav


@pytest.mark.parametrize("fmt,subtype", [("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")])
def test_file_formats_decode(tmp_path, fmt, subtype):
    wave = tone(440, 1.0)
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, wave, 16000, format=fmt, subtype=subtype)
    out = load_audio(path)
    assert out.dtype == torch.float32 and out.ndim == 1
    assert abs(out.numel() - 16000) < 2000  # codecs may pad a little
    spectrum = np.abs(np.fft.rfft(out.numpy()))
    assert abs(np.argmax(spectrum) * 16000 / out.numel() - 440) < 5


def test_all_input_forms_agree(tmp_path):
    wave = tone(300, 0.5)
    path = write_wav(tmp_path / "a.wav", wave, subtype="FLOAT")
    from_path = load_audio(path)
    from_bytes = load_audio(path.read_bytes())
    from_array = load_audio(wave, source_rate=16000)
    from_tensor = load_audio(torch.from_numpy(wave), source_rate=16000)
    from_gradio = load_audio((16000, (wave * 32767).astype(np.int16)))
    for other in (from_bytes, from_array, from_tensor):
        assert torch.equal(from_path, other)
    assert torch.allclose(from_path, from_gradio, atol=1e-4)


def test_int_pcm_and_channels_are_converted():
    stereo = np.stack([np.full(1000, 16384, np.int16), np.full(1000, -16384, np.int16)], axis=1)
    assert torch.allclose(load_audio((16000, stereo)), torch.zeros(1000))  # mixed to mono
    u8 = np.full(800, 192, np.uint8)
    assert torch.allclose(load_audio(u8, source_rate=16000), torch.full((800,), 0.5))
    channels_first = torch.stack([torch.ones(500), -torch.ones(500) * 0.5])
    assert torch.allclose(load_audio(channels_first, source_rate=16000), torch.full((500,), 0.25))


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_24", "PCM_32", "FLOAT"])
def test_bit_depths(tmp_path, subtype):
    path = write_wav(tmp_path / "b.wav", tone(440, 0.3), subtype=subtype)
    out = load_audio(path)
    assert torch.allclose(out, torch.from_numpy(tone(440, 0.3)), atol=1e-2)


def test_96khz_six_channels_resampled_and_mixed(tmp_path):
    sr = 96000
    wave = np.tile(tone(1000, 0.5, sr)[:, None], (1, 6))
    path = write_wav(tmp_path / "surround.wav", wave, sr, subtype="PCM_24")
    out = load_audio(path, 16000)
    assert out.numel() == 8000
    spectrum = np.abs(np.fft.rfft(out.numpy()))
    assert abs(np.argmax(spectrum) * 16000 / out.numel() - 1000) < 5


@pytest.mark.parametrize(
    "make,needle",
    [
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_text("this is not audio\n" * 20), "cannot decode"),
        (lambda p: None, "not found"),
    ],
)
def test_bad_files_name_the_file(tmp_path, make, needle):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioError, match=needle) as info:
        load_audio(path)
    assert "bad.wav" in str(info.value)


def test_bad_arrays():
    with pytest.raises(AudioError, match="no audio samples"):
        load_audio(np.zeros(0, np.float32), source_rate=16000)
    with pytest.raises(AudioError, match="NaN or infinite"):
        load_audio(np.array([0.1, np.nan, 0.2], np.float32), source_rate=16000)
    with pytest.raises(AudioError, match="NaN or infinite"):
        load_audio(np.array([0.1, np.inf], np.float32), source_rate=16000)
    with pytest.raises(AudioError, match="sample_rate"):
        load_audio(np.zeros(10, np.float32))
    with pytest.raises(AudioError, match="unsupported"):
        load_audio(12345)  # type: ignore[arg-type]


def test_silence_is_reported():
    cfg = FrontEndConfig(window_seconds=1.0, hop_seconds=0.5)
    with pytest.raises(AudioError, match="silent"):
        list(iter_windows(np.zeros(16000 * 3, np.float32), cfg, source_rate=16000))


def test_truncated_wav_still_decodes_what_is_there(tmp_path):
    path = write_wav(tmp_path / "t.wav", tone(440, 2.0))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    out = load_audio(path)
    assert 0 < out.numel() <= 32000
    cfg = FrontEndConfig(window_seconds=0.5, hop_seconds=0.25)
    assert len(list(iter_windows(path, cfg))) >= 1


def test_windows_cover_short_and_long_clips():
    cfg = FrontEndConfig(window_seconds=1.0, hop_seconds=0.5)
    short = list(iter_windows(tone(440, 0.3), cfg, source_rate=16000))
    assert len(short) == 1 and short[0][1] == 4800 and short[0][0].shape == (16000,)
    assert torch.all(short[0][0][4800:] == 0)  # zero padded, not repeated
    long = list(iter_windows(tone(440, 3.2), cfg, source_rate=16000))
    assert len(long) == 6 and all(v == 16000 for _, v in long)  # last window aligned to the end
    assert torch.equal(long[-1][0], torch.from_numpy(tone(440, 3.2)[-16000:]))


def test_long_file_is_streamed_and_limited(tmp_path):
    """A two-hour file is refused above max_seconds before decoding, and windows are read lazily."""
    sr = 1000  # keeps the two-hour test file at 14 MB
    path = tmp_path / "two_hours.wav"
    with sf.SoundFile(path, "w", samplerate=sr, channels=1, subtype="PCM_16") as f:
        block = tone(100, 60.0, sr)
        for _ in range(120):
            f.write(block)
    with pytest.raises(AudioError, match="7200.0 s long; the maximum is 3600"):
        list(iter_windows(path, FrontEndConfig(max_seconds=3600)))
    cfg = FrontEndConfig(window_seconds=5.0, hop_seconds=2.5)
    with AudioClip(path) as clip:
        assert clip.seconds == 7200.0
        windows = iter_windows(clip, cfg)
        first = [next(windows) for _ in range(3)]
    assert all(w.shape == (80000,) for w, _ in first)


def test_frontend_normalises_per_sample_and_ignores_padding():
    cfg = FrontEndConfig(window_seconds=1.0, hop_seconds=1.0, n_mels=32)
    fe = AudioFrontEnd(cfg)
    a = torch.from_numpy(tone(440, 1.0))
    b = torch.from_numpy(tone(2000, 1.0, amp=0.01))
    alone = fe(a[None])
    together = fe(torch.stack([a, b]))
    assert torch.allclose(alone[0], together[0], atol=1e-5)
    assert abs(float(alone.mean())) < 1e-4 and abs(float(alone.std()) - 1) < 1e-2
    # Gain does not change the features of audio well above the log floor (the per-sample mean removes it).
    noisy = a + 0.05 * torch.randn(a.shape, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(fe((noisy * 0.1)[None]), fe(noisy[None]), atol=1e-3)
    half = a.clone()
    half[8000:] = 0
    padded = fe(half[None], torch.tensor([8000]))
    assert torch.all(padded[..., 52:] == 0)


def test_errors_carry_a_machine_readable_reason(tmp_path):
    cases = {
        "not_found": lambda: load_audio(tmp_path / "missing.wav"),
        "empty": lambda: load_audio(write_wav(tmp_path / "e.wav", np.zeros(0, np.float32))),
        "undecodable": lambda: load_audio(b"definitely not audio" * 50),
        "non_finite": lambda: load_audio(np.array([0.1, np.nan], np.float32), source_rate=16000),
        "invalid": lambda: load_audio((0, np.zeros(10, np.int16))),
        "too_long": lambda: load_audio(tone(440, 3.0), source_rate=16000, max_seconds=2.0),
        "silent": lambda: list(iter_windows(np.zeros(16000, np.float32), FrontEndConfig(), source_rate=16000)),
    }
    for reason, call in cases.items():
        with pytest.raises(AudioError) as info:
            call()
        assert info.value.reason == reason, (reason, str(info.value))
    with pytest.raises(AudioError) as info:
        load_audio(tone(440, 3.0), source_rate=16000, max_seconds=2.0)
    assert (info.value.seconds, info.value.limit) == (3.0, 2.0)


def test_length_is_refused_from_the_header_before_decoding(tmp_path, monkeypatch):
    path = write_wav(tmp_path / "long.wav", tone(300, 40.0, sr=8000), sr=8000)

    def no_decoding(*args, **kwargs):
        raise AssertionError("samples were decoded")

    monkeypatch.setattr(sf.SoundFile, "read", no_decoding)
    with pytest.raises(AudioError, match="40.0 s long; the maximum is 30 s") as info:
        AudioClip(path, max_seconds=30)
    assert info.value.reason == "too_long"


def test_formats_libsndfile_cannot_read_are_decoded_with_ffmpeg(tmp_path):
    """Phones record m4a (AAC) and browsers webm (Opus): decoded by FFmpeg through PyAV, for every caller."""
    av = pytest.importorskip("av")
    wave = tone(440, 2.0)
    path = tmp_path / "phone.m4a"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000, layout="mono")
        for start in range(0, wave.size, 1024):
            frame = av.AudioFrame.from_ndarray(wave[None, start : start + 1024], format="flt", layout="mono")
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    out = load_audio(path)
    assert abs(out.numel() - 32000) < 3000
    spectrum = np.abs(np.fft.rfft(out.numpy()))
    assert abs(np.argmax(spectrum) * 16000 / out.numel() - 440) < 5
    assert torch.allclose(load_audio(path.read_bytes()), out)  # bytes of the same file
    with pytest.raises(AudioError) as info:
        load_audio(path, max_seconds=1.0)
    assert info.value.reason == "too_long"
    assert len(list(iter_windows(path, FrontEndConfig(window_seconds=1.0, hop_seconds=0.5)))) >= 3
