"""Benchmark: decode seconds per training clip, whole-video decoding vs decoding only the clip (goal: ≥ 5× less).

A 60 s 1280×720 30 fps H.264 clip (ffmpeg ``testsrc2``, x264 ``veryfast``, GOP 250, 3 B-frames; cached in
``--workdir``) feeds what one training item does, at 3 FPS, 17 frames, ``decode.size=128``, isolated decode child
(warm), one core:

* ``whole``   the pre-change item: decode every 3 FPS sample of the video (`pipeline.train.data.sampled_frames`),
  then cut one random 17-frame window (`random_window`);
* ``window``  `pipeline.train.data.random_clips`: probe → sample times → a random start → seek to the window's key
  frame and decode through its last sample.

Items alternate run by run; medians (and minima) over ``--runs`` items, each with its own random start, plus the
ratio; every clip pair is checked identical. Run: ``python benchmarks/train_decode.py [--runs 7] [--seconds 60]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_clip(workdir: Path, seconds: int) -> Path:
    path = workdir / f"train_720p30_{seconds}s.mp4"
    if not path.exists():
        tmp = path.with_suffix(".tmp.mp4")
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        "testsrc2=size=1280x720:rate=30", "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast",
                        "-g", "250", "-bf", "3", "-pix_fmt", "yuv420p", str(tmp)], check=True)
        tmp.rename(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--workdir", default="/tmp/vidtok-bench")
    args = ap.parse_args()
    core = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})  # the decode child inherits it
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    clip = str(make_clip(workdir, args.seconds))

    from pipeline.decode import DecodeConfig
    from pipeline.train.data import random_clips, random_window, sampled_frames

    decode = DecodeConfig(size=args.size, backend=args.backend)
    sampled_frames(clip, decode, None)  # warm: child start, imports, page cache
    times = {"whole": [], "window": []}
    for item in range(args.runs):
        seed = (0, item, 7)
        t0 = time.perf_counter()
        frames = sampled_frames(clip, decode, None)
        want = random_window(frames, 17, np.random.default_rng(list(seed)))[0]
        times["whole"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        (got,) = random_clips(clip, decode, 17, 1, seed, None)
        times["window"].append(time.perf_counter() - t0)
        assert np.array_equal(got, want), f"item {item}: clips differ"
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{clip} ({Path(clip).stat().st_size / 1e6:.1f} MB), {args.runs} items, core {core}, backend "
          f"{args.backend}, size {args.size}, load average {os.getloadavg()}")
    for k, v in times.items():
        print(f"{k:<8} median {med[k]:.3f} s/clip  min {min(v):.3f}")
    print(f"whole / window = {med['whole'] / med['window']:.1f}x (goal >= 5x); all {args.runs} clips identical")


if __name__ == "__main__":
    main()
