"""Benchmark: bytes the store serves per decoded input, and the bytes and time to index a long MP4.

1. **Bytes per input** (goal ≤ 1.05× for MP4/MKV). A 720p corpus (ffmpeg ``testsrc2``, ``--seconds`` each: H.264 MP4
   with the index at the end and at the front, H.264 MKV, VP9 WebM, MPEG-4 AVI, MPEG-2 PS) is put on a local moto S3
   server; each input is decoded as the tokenize job's decode stage does (`pipeline.decode.decode_windows`, 3 FPS,
   256², windows of 8, isolated child) through `tests.faults.FaultProxy`, which counts the GET body bytes it serves
   per object.
   Run twice, each in a fresh process: with the code of ``--baseline`` (exported with ``git archive``; default
   8cd0f11, `main` before this change) and with this checkout.
2. **Bytes per training clip** (`pipeline.train.data.random_clips`: one random 17-frame 128² clip at 3 FPS) of a
   ``--train-seconds`` 720p H.264 MP4 (``veryfast``, GOP 250, 3 B-frames) on the same server, before and after, for
   ``--runs`` items (each its own random start), without an index; ``benchmarks/train_reads.py`` measures the clip's
   byte range and the index path.
3. **Indexing a long MP4** (goal: the header, not the file). A ``--minutes`` 1280×720 30 fps H.264 MP4 (``-preset
   ultrafast -g 250``, index at the end as ffmpeg writes it; beyond 10 minutes a 10-minute encode repeated by stream
   copy: ``long_mp4``; cached in ``--workdir``) is probed as a remote object
   (`source.RemoteObject` over ``file://``, so the block cache counts what it fetches) from its header and by
   demuxing every packet (what the probe did before): bytes fetched and seconds, median of ``--runs``.

Run: ``python benchmarks/read_once.py [--minutes 120] [--seconds 20] [--train-seconds 60] [--baseline 8cd0f11]``
(``--skip-inputs --minutes 120 --demux-runs 1``: only the 2-hour index figure).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from baseline import export_tree  # noqa: E402

CORPUS = {  # name: ffmpeg output arguments
    "h264_moov_end.mp4": ["-c:v", "libx264", "-preset", "veryfast", "-bf", "3", "-g", "60"],
    "h264_faststart.mp4": ["-c:v", "libx264", "-preset", "veryfast", "-bf", "3", "-g", "60", "-movflags", "faststart"],
    "h264.mkv": ["-c:v", "libx264", "-preset", "veryfast", "-bf", "3", "-g", "60"],
    "vp9.webm": ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "2M"],
    "mpeg4.avi": ["-c:v", "mpeg4", "-q:v", "5", "-bf", "2"],
    "mpeg2.mpg": ["-c:v", "mpeg2video", "-q:v", "5", "-bf", "2", "-f", "vob"],
}
DECODE = ("import sys; from pipeline.decode import DecodeConfig, decode_windows; "
          "r = decode_windows(sys.argv[1], DecodeConfig(size=256, num_frames=8), "
          "{'client_kwargs': {'endpoint_url': sys.argv[2]}}); "
          "print(r.status, r.num_windows_total)")
TRAIN = ("import sys; from pipeline.decode import DecodeConfig; from pipeline.train.data import random_clips; "
         "c = random_clips(sys.argv[1], DecodeConfig(size=128), 17, 1, (0, int(sys.argv[3]), 7), "
         "{'client_kwargs': {'endpoint_url': sys.argv[2]}}); print('ok' if len(c) == 1 else 'failed')")


def ffmpeg(out: Path, seconds: float, args: list[str], wh: str = "1280x720") -> Path:
    if not out.exists():
        tmp = out.with_name("tmp." + out.name)
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        f"testsrc2=size={wh}:rate=30", "-t", str(seconds), *args, "-pix_fmt", "yuv420p", str(tmp)],
                       check=True)
        tmp.rename(out)
    return out


def moto() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    return proc, f"http://127.0.0.1:{port}"


def served(endpoint: str, code: Path, script: str, key: str, *args: str) -> tuple[int, int]:
    """(GET body bytes, GETs) served for object ``key`` while ``script`` runs with ``code`` in a fresh process."""
    from tests.faults import FaultProxy

    with FaultProxy(endpoint) as proxy:
        env = {**os.environ, "PYTHONPATH": str(code)}
        out = subprocess.run([sys.executable, "-c", script, f"s3://bench/{key}", proxy.endpoint_url, *args],
                             env=env, cwd=code, capture_output=True, text=True, check=True)
        assert out.stdout.split()[0] == "ok", out.stdout + out.stderr
        return proxy.served[f"/bench/{key}"], proxy.gets[f"/bench/{key}"]


def bytes_per_input(workdir: Path, seconds: float, train_seconds: float, runs: int, codes: dict[str, Path]) -> None:
    import s3fs

    files = {n: ffmpeg(workdir / f"{seconds:g}s_{n}", seconds, a) for n, a in CORPUS.items()}
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        os.environ.setdefault(k, v)
    proc, endpoint = moto()
    try:
        fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True)
        fs.mkdir("bench")
        for n, p in files.items():
            fs.put(str(p), f"bench/{n}")
        print(f"bytes served per decoded input (GET bodies / object size), {seconds:g} s 720p inputs:")
        print(f"{'input':<20} {'MB':>6} " + " ".join(f"{tag:>22}" for tag in codes))
        for n, p in files.items():
            cells = []
            for tag, code in codes.items():
                got, gets = served(endpoint, code, DECODE, n)
                cells.append(f"{got / p.stat().st_size:5.2f}x in {gets:3d} GETs")
            print(f"{n:<20} {p.stat().st_size / 1e6:6.1f} " + " ".join(f"{c:>22}" for c in cells))
        clip = ffmpeg(workdir / f"train_720p30_{train_seconds:g}s.mp4", train_seconds,
                      ["-c:v", "libx264", "-preset", "veryfast", "-g", "250", "-bf", "3"])
        fs.put(str(clip), f"bench/{clip.name}")
        print(f"bytes served per training clip ({clip.name}, {clip.stat().st_size / 1e6:.1f} MB), median of {runs}:")
        for tag, code in codes.items():
            got = [served(endpoint, code, TRAIN, clip.name, str(i))[0] for i in range(runs)]
            print(f"  {tag:<22} {statistics.median(got) / 1e6:7.2f} MB per clip "
                  f"({statistics.median(got) / clip.stat().st_size:.2f}x the file)")
    finally:
        proc.terminate()


PIECE_MINUTES = 10  # a long MP4 is this many minutes encoded once, then copied end to end (below)


def long_mp4(workdir: Path, minutes: float) -> Path:
    """The ``minutes`` 720p MP4: up to PIECE_MINUTES encoded by ffmpeg (``-preset ultrafast -g 250``); longer ones
    are that piece repeated by ffmpeg's concat demuxer with stream copy, into one MP4 with its ``moov`` at the end.
    Encoding 2 hours took ~1.5 h on 2 loaded cores; the copy takes a minute. What indexing reads (the ``moov``:
    one sample-table entry per frame, one sync entry per GOP) depends on the frame count and the GOPs, which the copy
    keeps (every piece starts with a key frame); only the pixels repeat."""
    if minutes <= PIECE_MINUTES:
        return ffmpeg(workdir / f"testsrc2_1280x720_30fps_{minutes:g}min.mp4", minutes * 60,
                      ["-c:v", "libx264", "-preset", "ultrafast", "-g", "250"])
    out = workdir / f"testsrc2_1280x720_30fps_{minutes:g}min_concat.mp4"
    if not out.exists():
        piece = long_mp4(workdir, PIECE_MINUTES)
        n = int(round(minutes / PIECE_MINUTES))
        listing = workdir / f"concat_{n}.txt"
        listing.write_text("".join(f"file '{piece}'\n" for _ in range(n)))
        tmp = out.with_name("tmp." + out.name)
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0", "-i",
                        str(listing), "-c", "copy", str(tmp)], check=True)
        tmp.rename(out)
    return out


def index_long_mp4(workdir: Path, minutes: float, runs: int, demux_runs: int | None = None) -> None:
    from pipeline.decode.probe import probe
    from pipeline.decode.source import RemoteObject

    video = long_mp4(workdir, minutes)
    size = video.stat().st_size
    demux_runs = demux_runs or runs
    print(f"indexing {video.name} ({size / 1e6:.0f} MB), median of {demux_runs} (demux) and {runs} (header):")
    base = None
    for label, kw, n in (("demux (before)", {"header_only": False}, demux_runs), ("header (after)", {}, runs)):
        times, fetched, info = [], 0, None
        for _ in range(n):
            obj = RemoteObject(f"file://{video}", size)
            t0 = time.perf_counter()
            info = probe(obj, **kw)
            times.append(time.perf_counter() - t0)
            fetched = obj.fetched_bytes
            obj.close()
        med = statistics.median(times)
        base = base or med
        print(f"  {label:<15} {fetched / 1e6:9.2f} MB fetched ({fetched / size:.4f}x)  {med:7.2f} s  "
              f"({base / med:.1f}x faster than demux)  {info.num_packets} packets, {len(info.restart_ticks)} key "
              f"frames, indexed from {info.indexed_from}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--train-seconds", type=float, default=60.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--demux-runs", type=int, default=None, help="runs of the demux probe (default --runs)")
    ap.add_argument("--baseline", default="8cd0f11")
    ap.add_argument("--workdir", default="/tmp/vidtok-bench")
    ap.add_argument("--skip-inputs", action="store_true")
    ap.add_argument("--skip-index", action="store_true")
    args = ap.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if not args.skip_inputs:
        codes = {f"before ({args.baseline})": export_tree(workdir, args.baseline), "after (this checkout)": REPO}
        bytes_per_input(workdir, args.seconds, args.train_seconds, args.runs, codes)
    if not args.skip_index:
        index_long_mp4(workdir, args.minutes, args.runs, args.demux_runs)
    print(f"load average {os.getloadavg()}, {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
