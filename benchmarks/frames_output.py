"""Benchmark: the tokenize job's frames side output (`frames.output=`) decodes once for tokens and frames.

Three ways to get a corpus's token windows and its frames cache, on one pinned core (the decode child inherits
it), each over the same ``--clips`` inputs (links to one clip of ``--seconds`` s of 1280×720 30 fps H.264:
``benchmarks/train_decode.make_clip``, ffmpeg ``testsrc2``, x264 ``veryfast``, GOP 250, 3 B-frames; cached in
``--workdir``), at 3 FPS, 256², 17-frame windows:

* ``tokens``          the tokenize decode stage as without the side output (`DecodeInputs`): windows only;
* ``cache job``       the frames-cache job's work (`pipeline.frames.build.cache_videos`, zstd): frames only;
* ``tokens+frames``   the decode stage with `frames.output` (`DecodeInputs(..., frames=...)`): both, one decode.

Without the side output a corpus costs ``tokens + cache job``; the figure is ``tokens+frames`` against that sum and
against ``tokens`` alone. Wall seconds per run on the pinned core (decode child included), configurations
alternating run by run; medians over ``--runs``. The windows of both decode-stage runs are checked identical.
Run: ``python benchmarks/frames_output.py [--clips 4] [--seconds 20] [--runs 3]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def corpus(workdir: Path, clips: int, seconds: int) -> list[str]:
    """`clips` inputs of the same generated clip (`train_decode.make_clip`): links, each its own input."""
    from train_decode import make_clip

    clip = make_clip(workdir, seconds)
    out = []
    for i in range(clips):
        link = workdir / f"side_{seconds}s_{i}.mp4"
        if not link.exists():
            link.symlink_to(clip)
        out.append(str(link))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workdir", default="/tmp/vidtok-bench")
    args = ap.parse_args()
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    clips = corpus(workdir, args.clips, args.seconds)

    import pyarrow as pa

    from pipeline.decode import DecodeConfig
    from pipeline.frames.build import cache_videos
    from pipeline.frames.codec import FramesConfig
    from pipeline.storage import OutputLayout
    from pipeline.tokenize.config import FramesOutputConfig
    from pipeline.tokenize.schema import PLAN_SCHEMA, frames_array
    from pipeline.tokenize.stages import DecodeInputs

    decode = DecodeConfig(size=256, num_frames=17, stride=17)
    plan = pa.Table.from_pylist([{"source": c, "source_size": os.path.getsize(c), "skip_windows": [],
                                  "prev_windows": 0} for c in clips], schema=PLAN_SCHEMA)
    inputs = [{"source": c, "source_size": os.path.getsize(c)} for c in clips]

    def windows(tables) -> dict:  # (source, window) -> frames: the side output sends an input's last window later
        out = {}
        for t in tables:
            f = frames_array(t)
            for i, key in enumerate(zip(t.column("source").to_pylist(), t.column("window_index").to_pylist())):
                out[key] = f[i].tobytes()
        return out

    def tokens(tmp: str):
        return windows(DecodeInputs(decode, OutputLayout(f"{tmp}/out"), run_id="b")(plan))

    def both(tmp: str):
        side = FramesOutputConfig(output=f"{tmp}/frames")
        return windows(DecodeInputs(decode, OutputLayout(f"{tmp}/out"), run_id="b", frames=side)(plan))

    def cache(tmp: str):
        res = cache_videos(inputs, OutputLayout(f"{tmp}/frames"), decode, FramesConfig())
        assert all(r["status"] == "ok" for r in res), res

    ways = {"tokens": tokens, "cache job": cache, "tokens+frames": both}
    times: dict[str, list[float]] = {k: [] for k in ways}
    seen: dict[str, dict] = {}
    tokens(tempfile.mkdtemp())  # warm the decode child
    for _ in range(args.runs):
        for name, fn in ways.items():
            tmp = tempfile.mkdtemp(prefix="side-", dir=workdir)
            t0 = time.perf_counter()
            got = fn(tmp)
            times[name].append(time.perf_counter() - t0)
            shutil.rmtree(tmp)
            if got is not None:
                seen.setdefault(name, got)
    assert seen["tokens"] == seen["tokens+frames"], "the side output changed the windows"
    med = {k: statistics.median(v) for k, v in times.items()}
    load = os.getloadavg()[0]
    print(f"{args.clips} clips x {args.seconds} s 720p30 H.264, one pinned core, median of {args.runs} "
          f"(load average {load:.1f}):")
    for k, v in med.items():
        print(f"  {k:14s} {v:7.2f} s   (runs: {', '.join(f'{x:.2f}' for x in times[k])})")
    sep = med["tokens"] + med["cache job"]
    print(f"  tokens + cache job (two decodes): {sep:.2f} s; tokens+frames (one decode): {med['tokens+frames']:.2f} s "
          f"= {med['tokens+frames'] / sep:.2f}x of that, {med['tokens+frames'] / med['tokens']:.2f}x of tokens alone")


if __name__ == "__main__":
    main()
