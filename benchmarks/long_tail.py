"""Benchmark: a mixed corpus's wall time against the ideal, before and after long inputs were split (goal ≤ 1.15×).

The corpus: one long 1280×720 30 fps H.264 video and ``--clips`` clips of ``--clip-s`` seconds (ffmpeg ``testsrc2``,
``-preset ultrafast -g 250``, ``benchmarks/long_video.make_video``; the clips are links to one generated clip, so
each is its own input of the same cost). The goal's corpus is one 20-minute video and 30 clips of 20 s; the
defaults here keep its 2 : 1 ratio of long to short video at 8 minutes and 12 clips, to fit minutes on a 2-core
machine (``--long-minutes 20 --clips 30`` runs the full one).

    ideal = (one-core decode CPU time of every input, measured here one after the other) / decode slots
    ratio = the decode stage's wall time (Ray Data's stats: first decode task's start to the last one's end) / ideal
            (also printed: the chain's time, summary.json `pipeline_time_s`, which includes Ray's start and the
            model's load, and the decode parallelism: the decode tasks' summed wall time / the stage's wall time)
    ratio_to_spread_tasks = the stage's wall time / (the decode tasks' summed wall time / slots): the tail's cost
            alone, the ideal of the tasks as they ran (on 2 cores the rest of the chain slows every task too)

Both sides run the real job (``jobs/tokenize_corpus.py``, private local Ray with ``--cpus`` CPUs, tiny preset on the
CPU at ``decode.size=32`` with ``tokenizer.num_cpus=0``; ``--cpus`` decode tasks at most, on a Ray with 3 × ``--cpus``
logical CPUs: Ray Data's resource allocator reserves half of the CPUs evenly for the running operators and shares
the rest, so with as many logical CPUs as cores the decode stage (one of three operators) gets about one task at a
time, on both sides; measured with a trace of the tasks): ``--baseline REF`` (default:
where this branch left main) exported by ``benchmarks/baseline.export_tree``, and this checkout with its default
``decode.segment_s``. Both must write the same windows (clip ids, frame indices, timestamps, token ids).

``--sweep 30,60,120,300`` also measures what cutting costs, on one core: the long video decoded whole, then as the
segments each ``segment_s`` gives, each segment a fresh decode (its own probe and seek): the overhead ratio is what
chooses the default of ``decode.segment_s`` (docs/benchmarks.md).

    python benchmarks/long_tail.py                          # 8 min + 12 x 20 s, baseline = merge-base with main
    python benchmarks/long_tail.py --long-minutes 20 --clips 30 --sweep 30,60,120,300
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from baseline import export_tree  # noqa: E402
from long_video import make_video  # noqa: E402

SIZE = 32  # the tiny encoder at 32x32 costs little next to decoding 720p: the run measures the decode stage
JOB = ["tokenizer.num_gpus=0", "tokenizer.num_cpus=0", "preset=vidtok_fsq_causal_488_32768_tiny",
       f"decode.size={SIZE}", "decode.timeout_s=600", "decode.max_wall_s=7200"]


def corpus(workdir: Path, long_minutes: float, clips: int, clip_s: float) -> tuple[Path, Path, Path]:
    long = make_video(workdir, long_minutes)
    clip = make_video(workdir, clip_s / 60)
    folder = workdir / f"mixed_{long_minutes:g}min_{clips}x{clip_s:g}s"
    folder.mkdir(parents=True, exist_ok=True)
    for i, target in [(-1, long)] + [(i, clip) for i in range(clips)]:
        link = folder / (f"long{target.suffix}" if i < 0 else f"clip{i:03d}{target.suffix}")
        if not link.exists():
            link.symlink_to(target)
    return folder, long, clip


def one_core_s(video: Path, segment_s: float | None = None) -> tuple[float, int]:
    """CPU seconds to decode ``video`` into this job's windows on one core, in this process (CPU time, not wall: the
    machine is shared); with ``segment_s``: its cut and every segment decoded as a segment task does it (a probe
    and a seek each). Returns (seconds, segments)."""
    from pipeline.decode import DecodeConfig, decode_windows
    from pipeline.decode.segments import probe_segments
    from pipeline.decode.windows import WindowRange

    cfg = DecodeConfig(size=SIZE, num_frames=17, isolate=False, timeout_s=7200, max_wall_s=7200, segment_s=segment_s)
    t0 = time.process_time()
    segs = probe_segments(str(video), cfg) if segment_s else None
    ranges = segs.ranges if segs is not None else [None]
    for r in ranges:
        res = decode_windows(str(video), cfg, choose=None if r is None else WindowRange(*r))
        assert res.status == "ok", res.message
    return time.process_time() - t0, len(ranges)


def run_job(code: Path, folder: Path, out: Path, cpus: int, extra: list[str]) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    ray_tmp = tempfile.mkdtemp(prefix="vtt", dir="/tmp")
    env = dict(os.environ, OMP_NUM_THREADS="1", VIDTOK_RAY_TMP=ray_tmp, PYTHONPATH=str(code))
    cmd = [sys.executable, str(code / "jobs/tokenize_corpus.py"), f"input={folder}", f"output={out}",
           f"ray.num_cpus={3 * cpus}", f"decode_task.concurrency={cpus}", *JOB, *extra]
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, cwd=str(code), capture_output=True, text=True)
    wall = time.time() - t0
    shutil.rmtree(ray_tmp, ignore_errors=True)
    if proc.returncode != 0:
        raise SystemExit(f"{code} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    s = json.loads((out / "summary.json").read_text())
    stats = "".join(p.read_text() for p in (out / "_stats").glob("*.txt"))
    span = re.search(r"MapBatches\(DecodeInputs\): (\d+) tasks executed, \d+ blocks produced in ([\d.]+)s", stats)
    busy = re.search(r"MapBatches\(DecodeInputs\).*?Remote wall time: .*?, ([\d.]+)(us|ms|s) total", stats, re.S)
    busy_s = float(busy[1]) / {"us": 1e6, "ms": 1e3, "s": 1.0}[busy[2]]
    return {"decode_stage_s": float(span[2]), "decode_tasks": int(span[1]), "decode_task_s": round(busy_s, 1),
            "decode_parallelism": round(busy_s / float(span[2]), 2), "chain_s": s["pipeline_time_s"],
            "job_wall_s": round(wall, 1), "windows": s["windows_this_run"]}


def windows_of(out: Path) -> dict:
    import pyarrow.parquet as pq

    t = pq.read_table(out / "tokens", columns=["clip_id", "frame_indices", "frame_timestamps", "tokens"])
    return {r["clip_id"]: (tuple(r["frame_indices"]), tuple(r["frame_timestamps"]), tuple(r["tokens"]))
            for r in t.to_pylist()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default="/tmp/vidtok_long_tail")
    ap.add_argument("--long-minutes", type=float, default=8.0)
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--clip-s", type=float, default=20.0)
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="Ray CPUs = decode slots")
    ap.add_argument("--baseline", default=None, help="commit of the before side (default: merge-base with main)")
    ap.add_argument("--sweep", default="", help="segment_s values to cost on one core, e.g. 30,60,120,300")
    ap.add_argument("--skip-jobs", action="store_true", help="only the one-core measurements")
    args = ap.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    folder, long, clip = corpus(workdir, args.long_minutes, args.clips, args.clip_s)
    print(f"load average at start: {os.getloadavg()}", flush=True)
    t_long, _ = one_core_s(long)
    t_clip, _ = one_core_s(clip)
    total = t_long + args.clips * t_clip
    ideal = total / args.cpus
    report = {"corpus": f"{args.long_minutes:g} min 720p + {args.clips} x {args.clip_s:g} s", "cpus": args.cpus,
              "one_core_long_s": round(t_long, 1), "one_core_clip_s": round(t_clip, 2),
              "one_core_total_s": round(total, 1), "ideal_s": round(ideal, 1)}
    print(json.dumps(report), flush=True)
    for seg in [float(x) for x in args.sweep.split(",") if x]:
        t, n = one_core_s(long, seg)
        row = {"segment_s": seg, "segments": n, "one_core_s": round(t, 1), "overhead": round(t / t_long, 3)}
        report.setdefault("sweep", []).append(row)
        print(json.dumps(row), flush=True)
    if not args.skip_jobs:
        ref = args.baseline or subprocess.run(["git", "-C", str(REPO), "merge-base", "HEAD", "main"], check=True,
                                              capture_output=True, text=True).stdout.strip()[:10]
        sides = {f"before ({ref})": (export_tree(workdir, ref), []), "after (this checkout)": (REPO, [])}
        outs = {}
        for name, (code, extra) in sides.items():
            out = workdir / f"out_{'before' if name.startswith('before') else 'after'}"
            r = run_job(code, folder, out, args.cpus, extra)
            r["ratio_to_ideal"] = round(r["decode_stage_s"] / ideal, 3)
            r["chain_ratio_to_ideal"] = round(r["chain_s"] / ideal, 3)
            # the stage's wall against its own tasks' time spread evenly over the slots: the tail alone, whatever
            # else shares the cores (on a 2-core machine the tokenizer, writer, driver and Ray take part of them)
            r["ratio_to_spread_tasks"] = round(r["decode_stage_s"] / (r["decode_task_s"] / args.cpus), 3)
            report[name] = r
            outs[name] = out
            print(json.dumps({name: r}), flush=True)
        a, b = (windows_of(o) for o in outs.values())
        report["same_windows"] = a == b
        assert a == b, f"{len(set(a) ^ set(b))} clip ids differ, or frames/tokens of a window"
    report["load_average_at_end"] = os.getloadavg()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
