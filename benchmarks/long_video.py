"""Benchmark: peak memory of the whole tokenize job on a long video vs its first minutes (goal: ≤ 1.2×).

Generates (once, cached in ``--workdir``) a ``--minutes``-long 1280×720 30 fps H.264 video (ffmpeg ``testsrc2``,
``-preset ultrafast -g 250``) and a ``--short-minutes`` one made by the same command, then runs the real job
(``jobs/tokenize_corpus.py``, private local Ray, tiny preset, ``tokenizer.num_gpus=0``, ``decode.size=256``) on each.
A sampler reads /proc every 0.2 s over the job's whole process tree (driver, raylet, Ray workers, decode children):
peak of the summed RSS (shared object-store pages counted once per process that maps them) and of the summed PSS
(shared pages split between their processes: the machine's real use).

``--baseline REF`` also runs the short video with the code of git commit REF (exported with ``git archive`` under
``--workdir``; 22c28a4 is the last commit before streaming decode) and checks that both runs wrote the same
windows: frame indices, timestamps and token ids per (source, window_index). REF runs with
``decode.backend=pyav``, the path ``auto`` takes now (REF's ``auto`` was decord, whose colour conversion differs by a
grey level, so its tokens would differ for that reason alone).

    python benchmarks/long_video.py --minutes 120            # a 2-hour video (generation takes a while)
    python benchmarks/long_video.py --minutes 120 --stride 340 --batch-size 2   # 2 h vs 2 min, ~15 min here
    python benchmarks/long_video.py --minutes 20 --stride 340 --baseline 22c28a4
    python benchmarks/long_video.py --decode-only 160x90 --minutes 30 --short-minutes 3 --baseline 22c28a4
    python benchmarks/long_video.py --decode-only 160x90 --minutes 30 --short-minutes 3 --container avi --baseline dff2072
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from baseline import export_tree  # noqa: E402
from proctree import descendants, kind, proc_kb  # noqa: E402


def make_video(workdir: Path, minutes: float, wh: str = "1280x720", ext: str = "mp4") -> Path:
    path = workdir / f"testsrc2_{wh}_30fps_{minutes:g}min.{ext}"
    if wh == "1280x720" and not path.exists() and (workdir / f"testsrc2_720p30_{minutes:g}min.mp4").exists():
        path = workdir / f"testsrc2_720p30_{minutes:g}min.mp4"  # the name of the first version's cache
    if not path.exists():
        tmp = path.with_suffix(f".tmp.{ext}")
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        f"testsrc2=size={wh}:rate=30", "-t", str(int(minutes * 60)), "-c:v", "libx264",
                        "-preset", "ultrafast", "-g", "250", "-pix_fmt", "yuv420p", str(tmp)], check=True)
        tmp.rename(path)
    return path


def run_job(code: Path, video: Path, root: Path, tag: str, size: int, stride: int | None, extra: tuple = ()) -> dict:
    """The tokenize job of the checkout ``code`` on the one video; peak memory of its process tree."""
    corpus, out = root / f"in_{tag}", root / f"out_{tag}"
    shutil.rmtree(out, ignore_errors=True)
    corpus.mkdir(parents=True, exist_ok=True)
    link = corpus / video.name
    if not link.exists():
        link.symlink_to(video)
    ray_tmp = tempfile.mkdtemp(prefix="vtl", dir="/tmp")  # short: AF_UNIX socket paths
    env = dict(os.environ, OMP_NUM_THREADS="1", VIDTOK_RAY_TMP=ray_tmp, PYTHONPATH=str(code))
    cmd = [sys.executable, str(code / "jobs/tokenize_corpus.py"), f"input={corpus}", f"output={out}",
           f"decode.size={size}", "tokenizer.num_gpus=0", "preset=vidtok_fsq_causal_488_32768_tiny",
           "decode.timeout_s=600"] + ([f"decode.stride={stride}"] if stride else []) + list(extra)
    proc = subprocess.Popen(cmd, env=env, cwd=str(code), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = {"rss_mb": 0.0, "pss_mb": 0.0, "processes": 0, "at_s": 0.0, "by_kind": {}}
    timeline: list[tuple[float, float]] = []  # (s since start, summed PSS MB) every ~10 s: growth vs start-up spike
    done = threading.Event()
    t_start = time.time()

    def sample():
        while not done.is_set():
            pids = [proc.pid, *descendants(proc.pid)]
            rss = sum(proc_kb(p, "VmRSS", "status") for p in pids) / 1024
            per = {p: proc_kb(p, "Pss", "smaps_rollup") / 1024 for p in pids}
            pss = sum(per.values())
            now = time.time() - t_start
            if pss > peak["pss_mb"]:  # where the memory sits at the PSS peak, summed per process kind
                by: dict[str, float] = {}
                for p, v in per.items():
                    k = kind(p)
                    by[k] = by.get(k, 0.0) + v
                peak["by_kind"] = {k: round(v) for k, v in sorted(by.items(), key=lambda kv: -kv[1])}
                peak["at_s"] = round(now, 1)
            peak["rss_mb"], peak["pss_mb"] = max(peak["rss_mb"], rss), max(peak["pss_mb"], pss)
            peak["processes"] = max(peak["processes"], len(pids))
            if not timeline or now - timeline[-1][0] >= 10:
                timeline.append((round(now, 1), round(pss)))
            time.sleep(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t0 = time.time()
    log, _ = proc.communicate()
    done.set()
    th.join()
    shutil.rmtree(ray_tmp, ignore_errors=True)
    if proc.returncode != 0:
        raise SystemExit(f"{tag} failed:\n{log[-4000:]}")
    s = json.loads((out / "summary.json").read_text())
    return {"run": tag, "video": video.name, "windows": s["windows_this_run"], "wall_s": round(time.time() - t0, 1),
            "peak_rss_sum_mb": round(peak["rss_mb"], 1), "peak_pss_sum_mb": round(peak["pss_mb"], 1),
            "max_processes": peak["processes"], "pss_peak_at_s": peak["at_s"], "pss_at_peak_by_kind": peak["by_kind"],
            "pss_timeline": timeline, "output": str(out)}


_CHILD_PEAK = """
import resource, sys
from pipeline.decode import DecodeConfig, close_runners
import pipeline.decode as d
import dataclasses
extra = {{"max_wall_s": 36000}} if "max_wall_s" in {{f.name for f in dataclasses.fields(DecodeConfig)}} else {{}}
cfg = DecodeConfig(size={size}, num_frames=17, backend="pyav", timeout_s=3600, **extra)
if hasattr(d, "iter_windows"):  # streaming code: take the windows one by one, keep none
    stream = d.iter_windows(sys.argv[1], cfg)
    n = sum(1 for _ in stream)
    status = stream.result.status
else:  # the code before streaming: the result holds them all
    res = d.decode_windows(sys.argv[1], cfg)
    n, status = len(res.windows), res.status
close_runners()  # joins the decode child, so its peak RSS is in RUSAGE_CHILDREN
print(status, n, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def decode_child_peak(code: Path, video: Path, size: int) -> dict:
    """Peak RSS of the isolated decode child decoding ``video`` into windows with the code of ``code``."""
    out = subprocess.run([sys.executable, "-c", _CHILD_PEAK.format(size=size), str(video)], cwd="/tmp",
                         env=dict(os.environ, PYTHONPATH=str(code), OMP_NUM_THREADS="1"), check=True,
                         capture_output=True, text=True).stdout.split()
    return {"code": str(code), "video": video.name, "status": out[-3], "windows": int(out[-2]),
            "child_peak_rss_mb": round(int(out[-1]) / 1024, 1)}


def read_windows(out: str) -> dict:
    import pyarrow.parquet as pq

    rows = {}
    for f in glob.glob(os.path.join(out, "**", "*.parquet"), recursive=True):
        t = pq.read_table(f)
        if "window_index" not in t.column_names or "tokens" not in t.column_names:
            continue
        for r in t.select(["source", "window_index", "frame_indices", "frame_timestamps", "tokens"]).to_pylist():
            rows[(os.path.basename(r["source"]), r["window_index"])] = (r["frame_indices"], r["frame_timestamps"],
                                                                       r["tokens"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=120.0)
    ap.add_argument("--short-minutes", type=float, default=2.0)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--stride", type=int, default=None,
                    help="decode.stride: windows every N samples. The whole video is still decoded and sampled; fewer "
                         "windows only cut the CPU tokenizer's time (on a 2-core machine it dominates)")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="tokenizer.batch_size for both runs. On the CPU the encoder's activations scale with the "
                         "windows per batch (~0.3 GB each with the tiny preset at 256²): a short run with fewer windows "
                         "than a batch (as with --stride 340) must get a batch it can fill, or the comparison "
                         "measures batch fill, not video length")
    ap.add_argument("--baseline", default=None, help="git commit to compare windows with on the short video")
    ap.add_argument("--workdir", default="/tmp/vidtok-long")
    ap.add_argument("--wh", default="1280x720", help="frame size of the generated videos (job mode)")
    ap.add_argument("--decode-only", default=None, metavar="WxH",
                    help="instead of the job: peak RSS of the decode child alone, on WxH videos (e.g. 160x90, cheap to "
                         "decode at length), with this code and, with --baseline, REF's")
    ap.add_argument("--container", default="mp4", choices=["mp4", "avi"],
                    help="decode-only: the videos' container (avi: no presentation times, the spill-file path)")
    args = ap.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if args.decode_only:
        base = export_tree(workdir, args.baseline) if args.baseline else None
        rows = []
        for minutes in (args.short_minutes, args.minutes):
            video = make_video(workdir, minutes, args.decode_only, args.container)
            for code in [REPO] + ([base] if base else []):
                rows.append(decode_child_peak(code, video, args.size))
                print(json.dumps(rows[-1]), f"load average {os.getloadavg()}", flush=True)
        return
    t = time.time()
    short, long = make_video(workdir, args.short_minutes, args.wh), make_video(workdir, args.minutes, args.wh)
    print(f"videos ready ({time.time() - t:.0f} s): {short.name} {short.stat().st_size / 1e6:.0f} MB, "
          f"{long.name} {long.stat().st_size / 1e6:.0f} MB; load average {os.getloadavg()}", flush=True)
    root = workdir / "runs"
    extra = (f"tokenizer.batch_size={args.batch_size}",) if args.batch_size else ()
    results = [run_job(REPO, short, root, "short", args.size, args.stride, extra)]
    print(json.dumps(results[-1]), flush=True)
    results.append(run_job(REPO, long, root, "long", args.size, args.stride, extra))
    print(json.dumps(results[-1]), flush=True)
    report = {"minutes": args.minutes, "short_minutes": args.short_minutes, "size": args.size, "stride": args.stride,
              "batch_size": args.batch_size,
              "runs": results,
              "long_over_short_rss": round(results[1]["peak_rss_sum_mb"] / results[0]["peak_rss_sum_mb"], 3),
              "long_over_short_pss": round(results[1]["peak_pss_sum_mb"] / results[0]["peak_pss_sum_mb"], 3),
              "load_average_end": os.getloadavg()}
    if args.baseline:
        base = export_tree(workdir, args.baseline)
        # REF with the backend `auto` picks now (REF's auto was decord)
        results.append(run_job(base, short, root, f"short_at_{args.baseline}", args.size, args.stride,
                               ("decode.backend=pyav", *extra)))
        print(json.dumps(results[-1]), flush=True)
        a, b = read_windows(results[0]["output"]), read_windows(results[-1]["output"])
        report["baseline_windows_identical"] = a == b and len(a) > 0
        report["baseline_windows"] = [len(a), len(b)]
    print(json.dumps(report, indent=2))
    (workdir / f"report_{args.minutes:g}min.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
