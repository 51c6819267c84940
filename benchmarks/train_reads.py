"""Benchmark: bytes the store serves per training clip, before and after clips read only their window.

What one training item does (`pipeline.train.data.random_clips`: one random 17-frame 128² clip at 3 FPS, isolated
decode child) on 1280×720 30 fps H.264 MP4s (ffmpeg ``testsrc2``, x264 ``veryfast``, GOP 250, 3 B-frames, index at
the end as ffmpeg writes it; ``--seconds`` each, default a 60-s and a 10-minute one; cached in ``--workdir``) on a
local moto S3 server, counted by `tests.faults.FaultProxy` (GET body bytes it serves for the video object). Each clip
runs in a fresh process, ``--runs`` items each with its own random start, for three sides in one run:

* ``before``      the code of ``--baseline`` (exported with ``git archive``; default ae9af4a, `main` before this
  change): header probe (header boxes + the first 4 MiB block) and a container seek, read in 4 MiB blocks;
* ``header``      this checkout without an index: the same header probe per clip, then only the window's packets
  (``pipeline/decode/packets.py``);
* ``index``       this checkout with ``index=`` (`pipeline/decode/index.py`, keyed rows): the probe result comes
  from the index, so a clip reads only its packets. The first clip of the video (which probes it and writes its row)
  is counted apart, as ``first use``.

Goal: bytes per clip ≤ 2× the clip's range — from the key frame before its first sample to the last
packet of its samples, computed from the probe's packet table for each item's start. Medians; the ratio column is
the median of per-clip ratios.

Run: ``python benchmarks/train_reads.py [--seconds 60 600] [--runs 5] [--baseline ae9af4a]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from baseline import export_tree  # noqa: E402
from read_once import ffmpeg, moto  # noqa: E402

CLIP = ("import sys; from pipeline.decode import DecodeConfig; from pipeline.train.data import random_clips; "
        "kw = {'index': sys.argv[4]} if len(sys.argv) > 4 else {}; "
        "c = random_clips(sys.argv[1], DecodeConfig(size=128), 17, 1, (0, int(sys.argv[3]), 7), "
        "{'client_kwargs': {'endpoint_url': sys.argv[2]}}, **kw); print('ok' if len(c) == 1 else 'failed')")


def served(endpoint: str, code: Path, key: str, item: int, index: str | None = None) -> int:
    """GET body bytes served for object ``key`` while one training item runs with ``code`` in a fresh process."""
    from tests.faults import FaultProxy

    with FaultProxy(endpoint) as proxy:
        args = [f"s3://bench/{key}", proxy.endpoint_url, str(item)] + ([index] if index else [])
        out = subprocess.run([sys.executable, "-c", CLIP, *args], env={**os.environ, "PYTHONPATH": str(code)},
                             cwd=code, capture_output=True, text=True, check=True)
        assert out.stdout.split()[-1] == "ok", out.stdout + out.stderr
        return proxy.served[f"/bench/{key}"]


def clip_range(info, item: int) -> int:
    """Bytes from the key frame before item ``item``'s window to the last packet of its samples."""
    from pipeline.decode import DecodeConfig, packets
    from pipeline.decode.assemble import frame_runs
    from pipeline.decode.resample import select_frames
    from pipeline.decode.windows import RandomWindows
    from pipeline.train.data import window_config

    cfg = window_config(DecodeConfig(size=128), 17)
    idx, _ = select_frames(info.pts_ticks, info.end_tick, cfg.fps, info.time_base, info.rates)
    plan = cfg.window_plan(len(idx))
    (w,) = RandomWindows((0, item, 7), 1)(len(plan.spans))
    ((first, last),) = packets.spans(info, frame_runs(idx, plan, [w], merge_all=False))
    start, end = packets.byte_range(info, first, last)
    return end - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, nargs="+", default=[60.0, 600.0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--baseline", default="ae9af4a")
    ap.add_argument("--workdir", default="/tmp/vidtok-bench")
    args = ap.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    import s3fs

    from pipeline.decode.probe import probe

    before = export_tree(workdir, args.baseline)
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        os.environ.setdefault(k, v)
    proc, endpoint = moto()
    try:
        fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True)
        fs.mkdir("bench")
        print(f"bytes served per training clip (17 frames at 3 FPS, 128²), median of {args.runs} items:")
        print(f"{'video':<28} {'MB':>6} {'range MB':>9} {'side':<26} {'MB/clip':>8} {'x range':>8} {'x file':>7}")
        for seconds in args.seconds:
            clip = ffmpeg(workdir / f"train_720p30_{seconds:g}s.mp4", seconds,
                          ["-c:v", "libx264", "-preset", "veryfast", "-g", "250", "-bf", "3"])
            fs.put(str(clip), f"bench/{clip.name}")
            size, info = clip.stat().st_size, probe(str(clip))
            items = range(1, args.runs + 1)
            ranges = {i: clip_range(info, i) for i in (0, *items)}
            index = f"s3://bench/index-{clip.stem}"
            first = served(endpoint, REPO, clip.name, 0, index)  # first use: probes the video, writes its row
            sides = {f"before ({args.baseline})": (before, None), "header (no index)": (REPO, None),
                     "index": (REPO, index)}
            for n, (side, (code, idx)) in enumerate(sides.items()):
                got = {i: served(endpoint, code, clip.name, i, idx) for i in items}
                med = statistics.median(got.values())
                ratio = statistics.median(got[i] / ranges[i] for i in items)
                span = statistics.median(ranges[i] for i in items)
                head = f"{clip.name:<28} {size / 1e6:6.1f} {span / 1e6:9.2f}" if not n else " " * 45
                print(f"{head} {side:<26} {med / 1e6:8.2f} {ratio:8.2f} {med / size:7.3f}")
            print(" " * 45 + f" {'index, first use':<26} {first / 1e6:8.2f} {first / ranges[0]:8.2f} "
                  f"{first / size:7.3f}")
    finally:
        proc.terminate()
    print(f"load average {os.getloadavg()}, {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
