"""A rank's stream on real Ray Data (`pipeline.train.stream.RankStream`) gives exactly the batches of the pure order
(`pipeline.train.order`) over the clips `_decode_items` makes, whatever order the decode tasks finish in: from step 0
and resumed inside a round, with a broken video shifting the stream."""

from __future__ import annotations

import numpy as np

from pipeline.config import load_config
from pipeline.decode.synth import write_synthetic_video
from pipeline.train.config import TrainConfig
from pipeline.train.data import _decode_items, source_for_item
from pipeline.train.order import TrainOrder
from pipeline.train.setup import TrainRun
from pipeline.train.stream import RankStream


def test_stream_rank_batches_equal_the_pure_order(ray_local, tmp_path):
    """World 2, rank 1, 2 clips per video, rounds of 4 clips: 5 steps from 0, then from a cursor inside a round."""
    urls = []
    for i, frames in enumerate((30, 45, 60)):
        write_synthetic_video(tmp_path / f"v{i}.mp4", frames, 12, size=(64, 48))
        urls.append(str(tmp_path / f"v{i}.mp4"))
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    urls.insert(1, str(tmp_path / "broken.mp4"))
    cfg = load_config(TrainConfig, None, ["preset=vidtok_kl_causal_488_4chn_tiny", "num_workers=2", "batch_size=4",
                                          "steps=5", "data.clips_per_video=2", "data.shuffle_buffer_clips=4",
                                          "decode.num_frames=5", f"output={tmp_path / 'runs'}"])
    run = TrainRun.of(cfg)
    order = TrainOrder(cfg.seed, 1, 2, cfg.per_worker_batch, 2, 4)
    kw = dict(urls=urls, seed=cfg.seed, decode=cfg.decode, num_frames=5, clips_per_video=2, storage_options=None,
              index=run.paths.index)

    def items():  # what the stream should see: each position's clips, decoded here without Ray
        p = 0
        while True:
            got = list(_decode_items({"id": np.array([order.item_id(p)])}, **kw)["video"])
            if got:
                yield p, got
            p += 1

    def take(it, n):
        return [next(it) for _ in range(n)]

    want = take(order.batches(order.resume_cursor([], 0), items()), 5)
    used = {p for b in want for p in b.after.items}
    broken = {p for p in range(max(used)) if source_for_item(order.item_id(p), len(urls), cfg.seed) == 1}
    assert broken and not broken & used  # the broken video's items gave no clip: the later items moved up
    for cursor, expect in ((order.resume_cursor([], 0), want), (want[2].after, want[3:])):
        stream = RankStream(run, order, cursor, urls)
        it = iter(stream)
        try:
            got = take(it, len(expect))
        finally:
            it.close()
            stream.close()
        assert [b.step for b in got] == [b.step for b in expect] and [b.after for b in got] == [b.after for b in expect]
        for g, w in zip(got, expect):
            diff = np.abs(np.stack(g.clips).astype(int) - np.stack(w.clips).astype(int))
            assert diff.max() == 0, f"step {g.step}: max {diff.max()} mean {diff.mean()}"
