"""A rank's stream on real Ray Data (`pipeline.train.stream.RankStream`) gives exactly the batches of the pure order
(`pipeline.train.order`) over the clips `_decode_items` makes, whatever order the decode tasks finish in: from step 0
and resumed inside a round, with a broken video shifting the stream. `GuardedBatches` (no Ray): a stream that gives
nothing for `data.stall_timeout_s` fails the worker instead of holding every rank in the all-reduce."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.decode.synth import write_synthetic_video
from pipeline.train.config import TrainConfig
from pipeline.train.data import _decode_items, source_for_item
from pipeline.train.order import TrainOrder
from pipeline.train.setup import TrainRun
from pipeline.train.stream import GuardedBatches, RankStream, StalledStream


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


class _Stream:
    """A stand-in for `RankStream`: yields `items` (an exception instance is raised there), then blocks forever if
    `hang`; records the threads that iterated and closed it."""

    def __init__(self, items, hang=False):
        self.items, self.hang, self.closed_by, self.read_by = items, hang, [], set()
        self._never = threading.Event()

    def __iter__(self):
        for x in self.items:
            self.read_by.add(threading.current_thread().name)
            if isinstance(x, BaseException):
                raise x
            yield x
        if self.hang:
            self._never.wait()

    def close(self):
        self.closed_by.append(threading.current_thread().name)


def test_guarded_batches_pass_through_then_end_and_close_in_their_thread():
    s = _Stream([1, 2, 3])
    g = GuardedBatches(s, timeout_s=30)
    assert list(g) == [1, 2, 3]
    g.close()
    assert s.closed_by == ["rank-batches"] and s.read_by == {"rank-batches"}


def test_guarded_batches_raise_a_stall_and_pass_stream_errors():
    """No batch within the limit: StalledStream naming the key (the worker fails; FailureConfig restarts the group).
    An error of the stream is raised to the consumer as it is."""
    g = GuardedBatches(_Stream([1], hang=True), timeout_s=0.3)
    assert next(g) == 1
    t = time.monotonic()
    with pytest.raises(StalledStream, match="data.stall_timeout_s"):
        next(g)
    assert 0.25 < time.monotonic() - t < 5
    g.close(wait_s=0.1)  # the reader is stuck in the stream: close() does not wait for it

    g = GuardedBatches(_Stream([1, ValueError("bad clip")]), timeout_s=30)
    assert next(g) == 1
    with pytest.raises(ValueError, match="bad clip"):
        next(g)


def test_guarded_batches_close_early_stops_the_reader():
    """The consumer stops after one batch (the last step): the reader, blocked on a full queue, stops and closes the
    stream."""
    s = _Stream(list(range(100)))
    g = GuardedBatches(s, timeout_s=30)
    assert next(g) == 0
    g.close()
    assert not g._thread.is_alive() and s.closed_by == ["rank-batches"]


def test_stall_timeout_key_is_checked():
    with pytest.raises(ValueError, match="data.stall_timeout_s"):
        load_config(TrainConfig, None, ["data.stall_timeout_s=-1"])
