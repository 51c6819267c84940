"""The decode test media matrix, generated once per test session (nothing downloaded, nothing in git).

Every good clip comes from ``pipeline.decode.synth`` (pixels encode the frame number), written by PyAV, or transcoded by
Debian's ``ffmpeg`` for codecs PyAV's wheel cannot encode (Theora) when that tool is installed. Broken inputs are
derived from good clips (cut, patched) or written directly (random bytes, text, audio only).

``CASES`` covers codec × container × rate: H.264 (B-frames, GOP 250 and 30), HEVC 8/10-bit, VP9, MPEG-4 part 2,
MPEG-2, AV1, Theora; MP4, MKV, WebM, AVI, MPEG-PS, Ogg; 24, 25, 30000/1001, 30 and 60 fps; variable frame rate;
rotation; an odd size; non-yuv420 pixel formats; audio tracks.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from pipeline.decode import status as st
from pipeline.decode.synth import SynthVideo, write_synthetic_video
from tests.conftest import built_once


@dataclass(frozen=True)
class Case:
    name: str
    codec: str
    ext: str
    fps: str = "30"
    seconds: float = 2.5
    size: tuple[int, int] = (160, 120)
    container: str | None = None
    pix_fmt: str | None = None
    gop: int | None = None
    bframes: int | None = None
    vfr: bool = False
    rotation: int = 0
    audio: bool = False
    via_ffmpeg: str | None = None  # Debian ffmpeg encoder to transcode a lossless PyAV clip with
    decord_ok: bool = True  # the probe trusts decord here (else a forced decord must fall back to PyAV)

    @property
    def num_frames(self) -> int:
        return int(round(self.seconds * float(Fraction(self.fps))))


CASES = [
    Case("h264_gop250_bf_mp4_30", "libx264", "mp4", "30", gop=250, bframes=3),
    Case("h264_gop30_bf_mkv_25", "libx264", "mkv", "25", gop=30, bframes=3),
    Case("h264_mp4_2997", "libx264", "mp4", "30000/1001", bframes=2),
    Case("h264_mkv_2997", "libx264", "mkv", "30000/1001", bframes=2),
    Case("h264_mp4_24", "libx264", "mp4", "24"),
    Case("h264_mp4_60", "libx264", "mp4", "60", seconds=2.0),
    Case("h264_mp4_25_audio", "libx264", "mp4", "25", audio=True),
    Case("h264_mkv_30_audio", "libx264", "mkv", "30", audio=True),
    Case("h264_avi_bf_30", "libx264", "avi", "30", bframes=3, decord_ok=False),
    Case("hevc8_mkv_30", "libx265", "mkv", "30"),
    Case("hevc10_mp4_25", "libx265", "mp4", "25", pix_fmt="yuv420p10le"),
    Case("vp9_webm_30", "libvpx-vp9", "webm", "30"),
    Case("vp9_webm_24", "libvpx-vp9", "webm", "24"),
    Case("mpeg4_bf_mp4_25", "mpeg4", "mp4", "25", bframes=2, decord_ok=False),  # decord is 2 frames late here
    Case("mpeg4_mp4_30", "mpeg4", "mp4", "30"),
    Case("mpeg4_avi_bf_25", "mpeg4", "avi", "25", bframes=2, decord_ok=False),
    Case("mpeg4_avi_30", "mpeg4", "avi", "30", decord_ok=False),
    Case("mpeg2_ps_25", "mpeg2video", "mpg", "25", container="vob", bframes=2, decord_ok=False),
    Case("mpeg2_ps_2997", "mpeg2video", "mpg", "30000/1001", container="vob", bframes=2, decord_ok=False),
    Case("av1_mp4_24", "libsvtav1", "mp4", "24", decord_ok=False),
    Case("av1_mkv_30", "libsvtav1", "mkv", "30", decord_ok=False),
    Case("theora_ogg_25", "ffv1", "mkv", "25", via_ffmpeg="libtheora", decord_ok=False),
    Case("h264_vfr_mp4", "libx264", "mp4", "30", vfr=True),
    Case("h264_vfr_mkv", "libx264", "mkv", "30", vfr=True),
    Case("h264_rot90_mp4", "libx264", "mp4", "30", rotation=90),
    Case("h264_rot180_mp4", "libx264", "mp4", "30", rotation=180),
    Case("h264_rot270_mp4", "libx264", "mp4", "25", rotation=270),
    Case("vp9_odd_853x480_webm", "libvpx-vp9", "webm", "30", seconds=1.5, size=(853, 480)),
    Case("h264_444_853x480_mp4", "libx264", "mp4", "24", seconds=1.5, size=(853, 480), pix_fmt="yuv444p"),
    Case("h264_422_mkv_25", "libx264", "mkv", "25", pix_fmt="yuv422p"),
]


def vfr_times(num_frames: int, seed: int = 7) -> np.ndarray:
    """Phone-like variable timing: intervals between 1/40 s and 1/20 s, first frame at 0."""
    rng = np.random.default_rng(seed)
    return np.concatenate([[0.0], np.cumsum(rng.uniform(1 / 40, 1 / 20, num_frames - 1))])


@dataclass
class Media:
    """A generated clip: the case, the file, and the truth (``timestamps`` of every frame, display size)."""

    case: Case
    path: Path
    truth: SynthVideo
    skipped: str = ""


def _ffmpeg_has(encoder: str) -> bool:
    exe = shutil.which("ffmpeg")
    if exe is None:
        return False
    out = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    return f" {encoder} " in out


def build(case: Case, folder: Path) -> Media:
    ts = vfr_times(case.num_frames) if case.vfr else None
    path = folder / f"{case.name}.{case.ext}"
    if case.via_ffmpeg:
        if not _ffmpeg_has(case.via_ffmpeg):
            return Media(case, path, None, skipped=f"ffmpeg with {case.via_ffmpeg} not installed")
        src = folder / f"{case.name}.src.mkv"
        truth = write_synthetic_video(src, case.num_frames, case.fps, case.size, codec=case.codec, pix_fmt="yuv420p")
        path = folder / f"{case.name}.ogv"
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(src), "-c:v", case.via_ffmpeg,
                        "-q:v", "8", str(path)], check=True)
        return Media(case, path, SynthVideo(str(path), truth.timestamps, truth.display_size, truth.coded_size,
                                            case.via_ffmpeg, 0))
    truth = write_synthetic_video(path, case.num_frames, case.fps, case.size, codec=case.codec, container=case.container,
                                  pix_fmt=case.pix_fmt, gop=case.gop, bframes=case.bframes, timestamps=ts,
                                  rotation=case.rotation, audio=case.audio)
    return Media(case, path, truth)


# ------------------------------------------------------------------------------------------------- broken inputs
@dataclass
class Broken:
    name: str
    path: Path
    reason: str
    kwargs: dict = field(default_factory=dict)  # DecodeConfig overrides


def _write_audio_only(path: Path) -> None:
    import av

    with av.open(str(path), "w", format="mp4") as out:
        s = out.add_stream("aac", rate=48000)
        s.layout = "mono"
        for start in range(0, 48000, 1024):
            t = np.arange(start, start + 1024) / 48000
            frame = av.AudioFrame.from_ndarray(np.sin(2 * np.pi * 440 * t).astype(np.float32)[None], format="fltp",
                                               layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 48000, start, Fraction(1, 48000)
            out.mux(s.encode(frame))
        out.mux(s.encode(None))


def build_broken(folder: Path) -> list[Broken]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    (folder / "empty.mp4").write_bytes(b"")
    out.append(Broken("zero_bytes", folder / "empty.mp4", st.NOT_A_VIDEO))
    (folder / "random.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 65536, dtype=np.uint8).tobytes())
    out.append(Broken("random_bytes", folder / "random.mp4", st.NOT_A_VIDEO))
    (folder / "notes.mp4").write_text("This is not a video.\n" * 200)
    out.append(Broken("text_file", folder / "notes.mp4", st.NOT_A_VIDEO))
    _write_audio_only(folder / "audio.mp4")
    out.append(Broken("audio_only", folder / "audio.mp4", st.NOT_A_VIDEO))

    # MP4 with the index at the front and at the end; Matroska/WebM have no index: only the header's duration tells
    for name, ext, kw in (("index_front", "mp4", {"container_options": {"movflags": "faststart"}}),
                          ("index_end", "mp4", {}), ("mkv", "mkv", {"codec": "libx264"}),
                          ("webm", "webm", {"codec": "libvpx-vp9"})):
        full = folder / f"full_{name}.{ext}"
        write_synthetic_video(full, 90, 30, **kw)
        data = full.read_bytes()
        cut = folder / f"truncated_{name}.{ext}"
        cut.write_bytes(data[: int(len(data) * 0.6)])
        out.append(Broken(f"truncated_{name}", cut, st.TRUNCATED))

    avi = folder / "mpeg4.avi"
    write_synthetic_video(avi, 30, 30, codec="mpeg4")
    data = avi.read_bytes()
    assert b"FMP4" in data, "the AVI muxer no longer writes the FMP4 tag this test patches"
    (folder / "unknown_codec.avi").write_bytes(data.replace(b"FMP4", b"QZQZ"))
    out.append(Broken("unsupported_codec", folder / "unknown_codec.avi", st.UNSUPPORTED_CODEC))

    mkv = folder / "good.mkv"
    write_synthetic_video(mkv, 60, 30)
    data = mkv.read_bytes()
    garbage = np.random.default_rng(1).integers(0, 256, len(data) - 48, dtype=np.uint8).tobytes()
    (folder / "corrupt.mkv").write_bytes(data[:48] + garbage)
    out.append(Broken("corrupt_header", folder / "corrupt.mkv", st.CORRUPT))

    short = folder / "short.mp4"
    write_synthetic_video(short, 30, 30)  # 1 s -> 3 samples at 3 fps, fewer than 17
    out.append(Broken("too_short", short, st.TOO_SHORT))
    out.append(Broken("too_many_pixels", mkv, st.TOO_LARGE, {"max_pixels": 160 * 119}))
    out.append(Broken("too_long", mkv, st.TOO_LARGE, {"max_duration_s": 1.5}))
    out.append(Broken("missing_file", folder / "does_not_exist.mp4", st.NOT_FOUND))
    return out


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> dict[str, Media]:
    """Every case of ``CASES`` written once per test run (a case whose tool is missing carries ``skipped``)."""
    return built_once(tmp_path_factory, "media", lambda folder: {c.name: build(c, folder) for c in CASES})


@pytest.fixture(scope="session")
def broken(tmp_path_factory) -> dict[str, Broken]:
    return built_once(tmp_path_factory, "broken", lambda folder: {b.name: b for b in build_broken(folder)})
