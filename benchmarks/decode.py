"""Decode benchmark: a 20 s 1280×720 30 fps H.264 clip to 3 FPS at 256×256, one process on one core.

Compared, interleaved run by run on the same core and reported as medians (and minima, since a shared machine is
noisy) plus ratios from this one run: of the medians, and the median of the per-run ratios ("paired"):

* ``ours``            ``pipeline.decode.sample_frames(fps=3, size=256)`` with ``backend=auto`` (and each backend forced)
* ``ours_decode_only`` the default path's own decoding floor: what ``ours`` decodes, nothing converted or resized
* ``decord_all``      (a) decord decodes every frame (``VideoReader.next``), the sampled ones are kept and resized
* ``ffmpeg``          (b) ``ffmpeg -threads 1 -vf fps=3,scale=256:256 -f rawvideo`` to /dev/null (same core)
* ``ffmpeg_noref``    the reference-frame floor: ``ffmpeg -threads 1 -skip_frame noref -i clip -f null -`` decodes
  only the frames others refer to, converts nothing. An exact sampler must also decode the sampled frames that are
  not references (on these clips 59 of the 60 are non-reference B-frames), so this floor is below any exact one
* ``torchcodec``      (when ``import torchcodec`` works) its CPU decoder, ``get_frames_at`` the rule's frames
  (``seek_mode="exact"``, 1 FFmpeg thread), resized by the same spatial policy
* ``ray_read_videos`` (c) ``ray.data.read_videos(fps=3, resize=(256, 256))`` on a local Ray with 1 CPU, every Ray
  process on the same core (execution only: Ray start-up is excluded)

Clips are generated with ``pipeline.decode.synth`` (moving texture + grain, x264 veryfast CRF 22, several Mb/s, 3 B-frames) at
GOP 250 and GOP 30 and cached in ``--workdir``. Run: ``python benchmarks/decode.py [--runs 5] [--core N] [--no-ray]``.
The decord build is whatever ``import decord`` finds: put another one first on ``PYTHONPATH`` (e.g. a
``pip install --target`` of ``decord2``) to measure it; the table header names the one measured.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_clip(workdir: Path, gop: int, seconds: int) -> Path:
    from pipeline.decode.synth import write_synthetic_video

    path = workdir / f"bench_720p30_gop{gop}_{seconds}s.mp4"
    if not path.exists():
        tmp = path.with_suffix(".tmp.mp4")
        write_synthetic_video(tmp, 30 * seconds, 30, size=(1280, 720), gop=gop, bframes=3, grain=12,
                              options={"preset": "veryfast", "crf": "22"})
        tmp.rename(path)
    return path


def ours(path: Path, backend: str):
    from pipeline.decode import sample_frames

    s = sample_frames(str(path), fps=3.0, size=256, backend=backend, threads=1)
    assert s.frames.shape[1:] == (256, 256, 3)
    return len(s.frames)


def ours_decode_only(path: Path):
    """The default path's own decoding floor: probe, select, demux and decode exactly what ``ours`` decodes (the
    reference frames plus the sampled ones, nothing past what the rule needs), but convert and resize nothing."""
    import numpy as np

    from pipeline.decode.backends import iter_pyav
    from pipeline.decode.probe import probe
    from pipeline.decode.resample import select_frames

    info = probe(str(path))
    idx, _ = select_frames(info.pts_ticks, info.end_tick, 3, info.time_base, info.rates)
    return sum(1 for _ in iter_pyav(str(path), info, [np.unique(idx)], 256, sample=lambda frame, size: None))


def decord_all(path: Path):
    """(a) decode every frame with decord, keep the ones the rule picks, resize those."""
    import decord
    import numpy as np

    from pipeline.decode.probe import probe
    from pipeline.decode.resample import select_frames
    from pipeline.decode.spatial import resize_crop

    info = probe(str(path))
    idx, _ = select_frames(info.pts_ticks, info.end_tick, 3, info.time_base, info.rates)
    want = set(idx.tolist())
    vr = decord.VideoReader(str(path), num_threads=1)
    kept = []
    for i in range(len(vr)):
        frame = vr.next()
        if i in want:
            kept.append(frame.asnumpy())
    return len(resize_crop(np.stack(kept), 256))


def ffmpeg(path: Path):
    """(b) FFmpeg's own pipeline on the same core (the child inherits this process's CPU affinity)."""
    out = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-threads", "1", "-filter_threads", "1",
                          "-i", str(path), "-vf", "fps=3,scale=256:256", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         check=True, capture_output=True).stdout
    return len(out) // (256 * 256 * 3)


def ffmpeg_noref(path: Path):
    """The floor: decode only reference frames, no conversion, no output."""
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-threads", "1", "-skip_frame", "noref",
                    "-i", str(path), "-an", "-f", "null", "-"], check=True, capture_output=True)
    return 0


def torchcodec_cpu(path: Path):
    """torchcodec's CPU decoder on the rule's frames, resized like ours."""
    import numpy as np
    from torchcodec.decoders import VideoDecoder

    from pipeline.decode.probe import probe
    from pipeline.decode.resample import select_frames
    from pipeline.decode.spatial import resize_crop_frame

    info = probe(str(path))
    idx, _ = select_frames(info.pts_ticks, info.end_tick, 3, info.time_base, info.rates)
    dec = VideoDecoder(str(path), seek_mode="exact", num_ffmpeg_threads=1, dimension_order="NHWC")
    frames = dec.get_frames_at(indices=np.unique(idx).tolist()).data.numpy()
    return len([resize_crop_frame(f, 256) for f in frames])


def ray_read_videos(path: Path):
    """(c) Ray Data's video reader with the same selection (stride round(30 / 3) = 10) and size."""
    import ray

    return len(ray.data.read_videos(str(path), fps=3, resize=(256, 256)).take_all())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--core", type=int, default=None, help="CPU to pin to (default: the last one allowed)")
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--workdir", default="/tmp/vidtok-bench")
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()

    core = args.core if args.core is not None else max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})  # before anything starts threads or children: they inherit it
    os.environ["OMP_NUM_THREADS"] = "1"
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    clips = {gop: make_clip(workdir, gop, args.seconds) for gop in (250, 30)}

    methods = {
        "ours": lambda p: ours(p, "auto"),
        "ours_pyav": lambda p: ours(p, "pyav"),
        "ours_decord": lambda p: ours(p, "decord"),
        "ours_decode_only": ours_decode_only,
        "decord_all": decord_all,
        "ffmpeg": ffmpeg,
        "ffmpeg_noref": ffmpeg_noref,
    }
    try:
        import torchcodec  # noqa: F401

        methods["torchcodec"] = torchcodec_cpu
    except Exception as e:  # not installed, or built for another torch / FFmpeg
        print(f"torchcodec not measured: {type(e).__name__}: {e}")
    if not args.no_ray:
        from pipeline.ray_utils import init_ray

        init_ray("local", num_cpus=1, object_store_memory=256 << 20)
        methods["ray_read_videos"] = ray_read_videos

    results = {}
    for gop, path in clips.items():
        times = {m: [] for m in methods}
        counts = {}
        for name, fn in methods.items():  # warm-up (imports, Ray workers), not timed
            counts[name] = fn(path)
        for _ in range(args.runs):
            for name, fn in methods.items():
                t0 = time.perf_counter()
                fn(path)
                times[name].append(time.perf_counter() - t0)
        med = {m: statistics.median(v) for m, v in times.items()}
        # runs are interleaved, so run k of every method shares the machine's state: the median of the per-run
        # ratios is steadier than the ratio of medians when the machine's speed drifts
        paired = {m: statistics.median(a / b for a, b in zip(times["ours"], times[m])) for m in methods}
        results[f"gop{gop}"] = {
            "clip": str(path), "bytes": path.stat().st_size, "frames_out": counts,
            "median_s": med, "min_s": {m: min(v) for m, v in times.items()},
            "ours_vs": {m: med["ours"] / med[m] for m in med if m != "ours"},
            "ours_vs_paired": {m: paired[m] for m in methods if m != "ours"},
        }
        import decord

        print(f"\nGOP {gop}: {path.name} ({path.stat().st_size / 1e6:.1f} MB), core {core}, {args.runs} runs, "
              f"decord {decord.__version__} ({Path(decord.__file__).parent}), load average {os.getloadavg()}")
        print(f"{'method':<18}{'frames':>7}{'median s':>10}{'min s':>8}{'ours / this':>13}{'paired':>8}")
        for m in methods:
            ratio = med["ours"] / med[m]
            print(f"{m:<18}{counts[m]:>7}{med[m]:>10.3f}{min(times[m]):>8.3f}{ratio:>13.2f}{paired[m]:>8.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if not args.no_ray:
        import ray

        ray.shutdown()


if __name__ == "__main__":
    main()
