"""Benchmark: seconds from creating the training dataset to its first batch, on the paper schedule (goal: ≤ 60 s).

Stage 1 of `schedule=paper` is 50,000 steps × global batch 16, one clip per video: 800,016 items. The training
stream is `pipeline.train.data.build_train_dataset` over a small generated corpus (six 6-s 320×240 H.264 clips,
real decoding at 3 FPS, 17 frames, 128×128), on a private local Ray with this machine's cores:

* ``before``  the first version's items, `ray.data.range(n_items, override_num_blocks=ceil(n_items / 2))`
  (400,008 read tasks, each created and `ray.put` before the first runs);
* ``after``   `pipeline.train.items.item_dataset` (a read task per 65,536 ids, ids made as the decode tasks ask).

Each is timed twice: a first iteration, then a second iteration of the same dataset, which is what a
`FailureConfig` restart did (Ray Train re-executed the dataset from its plan). A first batch is 16 clips.

``rank``  what a training worker now reads (`pipeline.train.stream.RankStream`, paper config, 8 workers, rank 0): its
          own items in the fixed order, a first batch once its first round (`data.shuffle_buffer_clips` clips, 64) is
          decoded; then the same rank resumed at step 25,001 (mid-run, inside a round: it reads the round's items
          with clips still to come, then from the checkpoint's position), as after a restart.
``--before-items`` caps the before run (its cost grows with the item count; at 40,000 items it took 122-131 s);
the after run always uses the paper count. Run: ``python benchmarks/train_start.py [--before-items 800016]``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PAPER_ITEMS = 50_000 * 16 + 16


def first_batch_s(make_ds, batch: int) -> tuple[float, float]:
    """(seconds to the first batch of a fresh dataset, seconds to the first batch of its second iteration)."""
    t0 = time.perf_counter()
    ds = make_ds()
    next(iter(ds.iter_batches(batch_size=batch, batch_format="numpy")))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    next(iter(ds.iter_batches(batch_size=batch, batch_format="numpy")))
    return first, time.perf_counter() - t0


def rank_stream_s(urls: list[str]) -> tuple[float, float, int]:
    """(seconds to rank 0's first batch from step 0, the same resumed mid-run, its round size) on the paper config."""
    from pipeline.config import load_config
    from pipeline.train.config import TrainConfig
    from pipeline.train.order import Cursor, TrainOrder
    from pipeline.train.setup import TrainRun
    from pipeline.train.stream import RankStream

    # output: the video index training reads through lives beside the corpus (<output>/_index)
    cfg = load_config(TrainConfig, None, ["schedule=paper", "num_workers=8", "preset=vidtok_fsq_causal_488_32768",
                                          f"output={Path(urls[0]).parent / 'runs'}"])
    order = TrainOrder(cfg.seed, 0, 8, cfg.per_worker_batch, cfg.data.clips_per_video, cfg.data.shuffle_buffer_clips)
    step = 25_001  # inside a round (32 steps of 2 clips): what a checkpoint after step 25,001 holds
    start = (step // order.round_steps) * order.round_clips // order.clips_per_video
    resumed = Cursor(step, start + order.round_clips // order.clips_per_video,
                     tuple(range(start, start + order.round_clips // order.clips_per_video)))
    out = []
    for cursor in (Cursor(), resumed):
        t0 = time.perf_counter()
        stream = RankStream(TrainRun.of(cfg), order, cursor, urls)  # the preset's 17 frames
        it = iter(stream)
        assert next(it).step == cursor.step
        out.append(time.perf_counter() - t0)
        it.close()
        stream.close()
    return out[0], out[1], order.round_clips


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before-items", type=int, default=PAPER_ITEMS)
    ap.add_argument("--skip-before", action="store_true")
    args = ap.parse_args()

    import ray

    from pipeline.decode import DecodeConfig
    from pipeline.decode.synth import write_synthetic_video
    from pipeline.train.data import build_train_dataset, num_train_items
    from pipeline.train.items import n_read_tasks

    tmp = Path(tempfile.mkdtemp(prefix="train-start-"))
    urls = []
    for i in range(6):
        write_synthetic_video(tmp / f"v{i}.mp4", 6 * 24, 24, size=(320, 240), gop=48)
        urls.append(str(tmp / f"v{i}.mp4"))
    n = num_train_items(50_000, 16, 1)
    assert n == PAPER_ITEMS
    decode = DecodeConfig(size=128)
    ray.init(num_cpus=os.cpu_count(), _temp_dir=str(tmp / "ray"), include_dashboard=False, log_to_driver=False)
    try:
        def dataset(items=None, steps=50_000):
            return build_train_dataset(urls, steps=steps, global_batch=16, num_frames=17, decode=decode,
                                       clips_per_video=1, seed=0, storage_options=None, items=items)

        after = first_batch_s(dataset, 16)
        print(f"after : {n:,} items in {n_read_tasks(n)} read tasks: first batch {after[0]:.1f} s, "
              f"after a restart {after[1]:.1f} s")
        if not args.skip_before:
            m = args.before_items
            steps = max(1, (m - 16) // 16)
            before = first_batch_s(lambda: dataset(ray.data.range(m, override_num_blocks=math.ceil(m / 2)),
                                                   steps=steps), 16)
            print(f"before: {m:,} items in {math.ceil(m / 2):,} read tasks: first batch {before[0]:.1f} s, "
                  f"after a restart {before[1]:.1f} s")
            print(f"before / after (first batch) = {before[0] / after[0]:.1f}x"
                  + ("" if m == n else f" (before run on {m:,} of the paper's {n:,} items)"))
        rank_first, rank_resumed, round_clips = rank_stream_s(urls)
        print(f"rank  : world 8, rank 0, first round {round_clips} clips: first batch {rank_first:.1f} s; resumed at "
              f"step 25,001 {rank_resumed:.1f} s")
        print(f"goal: after and rank <= 60 s; {os.cpu_count()} cores; load average {os.getloadavg()}")
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
