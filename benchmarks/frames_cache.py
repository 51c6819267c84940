"""Frames-cache format benchmark: which stored form of the decoded 3 FPS frames trains fastest per byte.

The decoded frames of a 20 s 1280×720 30 fps H.264 clip (GOP 30: `--clip texture`, full-frame moving colour texture
+ grain, the pessimistic case for bytes; or `--clip code`, `benchmarks/decode.py`'s clip, whose centre crop is the
frame code's flat cells, the optimistic one), at 3 FPS and 256² by the decode stage's spatial policy (`pipeline.decode.sample_frames`), are
stored three ways and read back as training reads them, a 17-frame window at a random start:

* ``zstd``   raw uint8 RGB per frame, Zstandard level 3 (pyarrow's codec): lossless
* ``jpeg``   Pillow JPEG q95 per frame: lossy
* ``h264``   a short-GOP re-encode: PyAV libx264 crf 18, one GOP of 17 frames per blob (GOP = window length); a
  window at a random start spans two GOPs, so a read decodes both (34 frames) and keeps its 17

For each: stored bytes per 17-frame window, bytes a window read fetches, CPU-ms per window read (process time, the
median over `--runs` reads of every start), PSNR against the decoded frames. At 128²: reading the 256² cache and
downscaling by the same spatial policy (what stage 1 does, `pipeline/frames/read.py`) vs a cache stored at 128².
CPU time, not wall time, because the machine is shared (the load average is printed).

    python benchmarks/frames_cache.py [--clip texture|code] [--runs 3] [--seconds 20] [--workdir /tmp/vidtok-bench]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WINDOW = 17


def make_texture_clip(workdir: Path, seconds: int) -> Path:
    """A 1280×720 30 fps clip of full-frame colour texture (smooth noise at 3 scales, scrolling 2 px a frame) plus
    grain: no flat areas, so frame bytes are a pessimistic case for compression (the synthetic code clip's centre
    crop is flat cells, an optimistic one)."""
    import av
    from PIL import Image

    path = workdir / f"bench_720p30_texture_{seconds}s.mp4"
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    w, h, n = 1280, 720, 30 * seconds
    tex = np.zeros((h, w + 2 * n, 3), np.float32)
    for cell, amp in ((64, 60.0), (16, 30.0), (4, 12.0)):
        small = rng.uniform(-amp, amp, size=(h // cell + 2, (w + 2 * n) // cell + 2, 3)).astype(np.float32)
        for c in range(3):
            img = Image.fromarray(small[:, :, c], mode="F").resize(((w + 2 * n) // cell * cell + 2 * cell,
                                                                     h // cell * cell + 2 * cell), Image.BILINEAR)
            tex[:, :, c] += np.asarray(img)[:h, : w + 2 * n]
    tex = np.clip(tex + 128, 0, 255).astype(np.uint8)
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as out:
        s = out.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"preset": "veryfast", "crf": "22", "g": "30", "bf": "3"}
        for i in range(n):
            f = tex[:, 2 * i : 2 * i + w].astype(np.int16) + rng.integers(-6, 7, size=(h, w, 1), dtype=np.int16)
            for p in s.encode(av.VideoFrame.from_ndarray(f.clip(0, 255).astype(np.uint8), format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    tmp.rename(path)
    return path


def h264_encode(frames: np.ndarray, crf: int = 18) -> list[bytes]:
    """One MP4 blob per GOP of WINDOW frames (each starts with a key frame)."""
    import av

    blobs = []
    for g in range(0, len(frames), WINDOW):
        buf = io.BytesIO()
        with av.open(buf, "w", format="mp4") as out:
            s = out.add_stream("libx264", rate=3)
            s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
            s.options = {"crf": str(crf), "preset": "medium", "g": str(WINDOW), "threads": "1"}
            for f in frames[g:g + WINDOW]:
                for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    out.mux(p)
            for p in s.encode():
                out.mux(p)
        blobs.append(buf.getvalue())
    return blobs


def h264_decode(blob: bytes) -> np.ndarray:
    import av

    with av.open(io.BytesIO(blob)) as c:
        c.streams.video[0].thread_count = 1
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def read_window(fmt: str, blobs: list[bytes], start: int, size: int, out_size: int) -> np.ndarray:
    from pipeline.decode.spatial import resize_crop
    from pipeline.frames.codec import decode_frames

    if fmt == "h264":
        g0, g1 = start // WINDOW, (start + WINDOW - 1) // WINDOW
        frames = np.concatenate([h264_decode(blobs[g]) for g in range(g0, g1 + 1)])
        clip = frames[start - g0 * WINDOW:start - g0 * WINDOW + WINDOW]
    else:
        clip = decode_frames(blobs[start:start + WINDOW], fmt, size, size)
    return clip if out_size == size else resize_crop(clip, out_size)


def read_bytes(fmt: str, blobs: list[bytes], start: int) -> int:
    if fmt == "h264":
        return sum(len(blobs[g]) for g in range(start // WINDOW, (start + WINDOW - 1) // WINDOW + 1))
    return sum(len(b) for b in blobs[start:start + WINDOW])


def measure(fmt: str, frames: np.ndarray, runs: int, out_size: int) -> dict:
    from pipeline.decode.spatial import resize_crop
    from pipeline.frames.codec import encode_frame, psnr

    size = frames.shape[1]
    t0 = time.process_time()
    blobs = h264_encode(frames) if fmt == "h264" else [encode_frame(f, fmt) for f in frames]
    enc_ms = (time.process_time() - t0) * 1e3 / len(frames)
    n = len(frames)
    starts = list(range(0, n - WINDOW + 1))
    per_read = []
    for _ in range(runs):
        for s in starts:
            t0 = time.process_time()
            read_window(fmt, blobs, s, size, out_size)
            per_read.append((time.process_time() - t0) * 1e3)
    ref = frames if out_size == size else resize_crop(frames, out_size)
    got = np.concatenate([read_window(fmt, blobs, s, size, out_size) for s in range(0, n - WINDOW + 1, WINDOW)])
    return {
        "format": fmt, "stored": size, "read": out_size,
        "stored_kb_per_window": sum(len(b) for b in blobs) / n * WINDOW / 1024,
        "read_kb_per_window": statistics.mean(read_bytes(fmt, blobs, s) for s in starts) / 1024,
        "cpu_ms_per_window": statistics.median(per_read),
        "encode_ms_per_frame": enc_ms,
        "psnr_db": psnr(got, ref[:len(got)]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--workdir", default="/tmp/vidtok-bench")
    ap.add_argument("--clip", choices=("code", "texture"), default="texture",
                    help="code: benchmarks/decode.py's clip (flat code cells fill the crop: optimistic bytes); "
                         "texture: full-frame moving colour texture + grain (pessimistic bytes)")
    args = ap.parse_args()
    from benchmarks.decode import make_clip
    from pipeline.decode import sample_frames
    from pipeline.decode.spatial import resize_crop

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    clip = make_clip(work, 30, args.seconds) if args.clip == "code" else make_texture_clip(work, args.seconds)
    f256 = sample_frames(str(clip), fps=3.0, size=256, threads=1).frames
    f128 = resize_crop(f256, 128)  # only the shape matters for the 128²-stored rows' reference; see below
    f128_direct = sample_frames(str(clip), fps=3.0, size=128, threads=1).frames
    print(f"clip {clip.name}: {len(f256)} frames at 3 FPS; load average {os.getloadavg()} on {os.cpu_count()} CPUs")
    rows = []
    for fmt in ("zstd", "jpeg", "h264"):
        rows.append(measure(fmt, f256, args.runs, 256))
        rows.append(measure(fmt, f256, args.runs, 128))
        rows.append(measure(fmt, f128_direct, args.runs, 128))
    del f128
    print(f"{'format':6} {'stored':>6} {'read':>5} {'KB/window stored':>17} {'KB/window read':>15} "
          f"{'CPU ms/window':>14} {'enc ms/frame':>13} {'PSNR dB':>8}")
    for r in rows:
        print(f"{r['format']:6} {r['stored']:>5}² {r['read']:>4}² {r['stored_kb_per_window']:>17.0f} "
              f"{r['read_kb_per_window']:>15.0f} {r['cpu_ms_per_window']:>14.2f} {r['encode_ms_per_frame']:>13.2f} "
              f"{r['psnr_db']:>8.1f}")
    base = next(r for r in rows if r["format"] == "zstd" and r["stored"] == r["read"] == 256)["cpu_ms_per_window"]
    for r in rows:
        if r["stored"] == r["read"] == 256:
            print(f"read CPU vs zstd at 256²: {r['format']} {r['cpu_ms_per_window'] / base:.1f}x")
    d = resize_crop(f256, 128).astype(np.float64) - f128_direct.astype(np.float64)
    from pipeline.frames.codec import psnr
    print(f"128² by downscaling the 256² frames vs decoding at 128² directly: PSNR {psnr(resize_crop(f256, 128), f128_direct):.1f} dB, "
          f"max |diff| {np.abs(d).max():.0f}, mean |diff| {np.abs(d).mean():.2f} grey levels")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
