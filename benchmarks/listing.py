"""Benchmark: input listing speed (objects per second), `pipeline.inputs.iter_inputs` against baselines in the same run.

    .venv/bin/python benchmarks/listing.py [--s3-objects 5000 (0: skip)] [--folders 10] [--local-files 100000] [--runs 3]

* S3: a moto server on 127.0.0.1 with `--s3-objects` keys in `--folders` first-level folders. Timed: s3fs's
  `find` (collects the whole prefix in memory: the baseline), `iter_inputs` with one stream (`threads=1`) and with
  parallel folders (`threads=8`). moto distorts both ways: its `list_objects_v2` builds the whole sorted key list
  for every page (a prefix of N keys costs O(N^2 / 1000)), and it is one Python process, so parallel requests
  queue on its GIL. Real S3 answers a page in ~50-200 ms whatever the bucket size and in parallel, so there the
  parallel figure scales with the folders; read the moto ratios as lower bounds.
* Local: a tree of `--local-files` empty files (100 folders). Timed: `os.walk` + `os.stat` (baseline), the walk
  alone as before (fsspec `ls(detail=True)` per folder) and now (`os.scandir`), and all of `iter_inputs` (input
  rows and Arrow chunks on top of the walk).
Medians of `--runs`; ratios against the baseline of the same run.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

EXTS = [".mp4"]


def _median_rate(fn, n: int, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        got = fn()
        times.append(time.perf_counter() - t0)
        assert got == n, f"listed {got}, expected {n}"
    return n / statistics.median(times)


def _count(chunks) -> int:
    return sum(c.num_rows for c in chunks)


def bench_s3(objects: int, folders: int, runs: int) -> dict:
    from pipeline.inputs import iter_inputs
    from pipeline.storage import s3_client, url_to_fs

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
        opts = {"client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}"}}
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.2)
        client = s3_client(opts)
        client.create_bucket(Bucket="bench")
        t0 = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: client.put_object(Bucket="bench", Key=f"v/{i % folders:03d}/{i:08d}.mp4", Body=b""),
                          range(objects)))
        print(f"s3: {objects} objects in {folders} folders created in {time.perf_counter() - t0:.1f} s", flush=True)
        fs, _ = url_to_fs("s3://bench", opts)
        rates = {
            "s3fs find (baseline)": _median_rate(lambda: len(fs.find("bench/v")), objects, runs),
            "iter_inputs threads=1": _median_rate(lambda: _count(iter_inputs(
                "s3://bench/v", extensions=EXTS, storage_options=opts, threads=1)), objects, runs),
            "iter_inputs threads=8": _median_rate(lambda: _count(iter_inputs(
                "s3://bench/v", extensions=EXTS, storage_options=opts, threads=8)), objects, runs),
        }
    finally:
        proc.kill()
    return rates


def bench_local(files: int, runs: int) -> dict:
    from pipeline.inputs import iter_inputs

    root = Path(tempfile.mkdtemp(prefix="listbench-"))
    t0 = time.perf_counter()
    for d in range(100):
        (root / f"{d:03d}").mkdir()
    for i in range(files):
        (root / f"{i % 100:03d}" / f"{i:08d}.mp4").touch()
    print(f"local: {files} files created in {time.perf_counter() - t0:.1f} s", flush=True)

    def walk():
        n = 0
        for folder, _, names in os.walk(root):
            for name in sorted(names):
                os.stat(os.path.join(folder, name))
                n += name.endswith(".mp4")
        return n

    import fsspec

    from pipeline.inputs import _iter_local, _iter_walk

    local = fsspec.filesystem("file")
    try:
        return {"os.walk + stat (baseline)": _median_rate(walk, files, runs),
                "walk: fsspec ls (before)": _median_rate(lambda: sum(1 for _ in _iter_walk(local, str(root))),
                                                         files, runs),
                "walk: os.scandir (now)": _median_rate(lambda: sum(1 for _ in _iter_local(str(root))), files, runs),
                "iter_inputs (rows + Arrow)": _median_rate(lambda: _count(iter_inputs(str(root), extensions=EXTS)),
                                                           files, runs)}
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--s3-objects", type=int, default=5000)
    ap.add_argument("--folders", type=int, default=10)
    ap.add_argument("--local-files", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    benches = [] if a.s3_objects == 0 else [("S3 (moto, 127.0.0.1)", bench_s3(a.s3_objects, a.folders, a.runs))]
    benches.append(("local tree", bench_local(a.local_files, a.runs)))
    for name, rates in benches:
        base = next(iter(rates.values()))
        print(f"\n{name}: objects listed per second (median of {a.runs})")
        for k, v in rates.items():
            print(f"  {k:<28} {v:>10.0f} /s   {v / base:5.2f}x")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
