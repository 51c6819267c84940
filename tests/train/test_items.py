"""The lazy training item stream: every id of the run once, and the same clips as the first version's `range`."""

from __future__ import annotations

import math

import numpy as np

from pipeline.decode import DecodeConfig
from pipeline.decode.synth import write_synthetic_video
from pipeline.train.data import _decode_items, build_train_dataset, num_train_items
from pipeline.train.items import item_dataset, item_ranges


def test_items_ranges_cover_every_id_once_in_order():
    """The read tasks' id ranges tile `0 … n − 1` in increasing order, for sizes around the per-read count."""
    for n, per in [(1, 4), (4, 4), (5, 4), (800_016, 65536)]:
        ranges = item_ranges(n, per)
        assert ranges[0][0] == 0 and ranges[-1][1] == n and len(ranges) == math.ceil(n / per)
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:])) and all(e - s <= per for s, e in ranges)


def test_items_dataset_yields_each_id_once(ray_local):
    """The Ray dataset's rows are exactly the ids `0 … n − 1`, across several read tasks."""
    ids = [int(r["id"]) for r in item_dataset(23, per_read=5).take_all()]
    assert sorted(ids) == list(range(23))


def test_items_train_dataset_same_clips_as_range(ray_local, tmp_path):
    """The training stream's clips are those `_decode_items` makes for ids `0 … n − 1`: the item → clip rule and
    the id set are those of the first version (`ray.data.range(n_items)`), only their delivery changed."""
    urls = []
    for i, frames in enumerate((30, 45, 60)):
        write_synthetic_video(tmp_path / f"v{i}.mp4", frames, 12, size=(64, 48))
        urls.append(str(tmp_path / f"v{i}.mp4"))
    decode = DecodeConfig(size=32)
    kw = dict(urls=urls, seed=5, decode=decode, num_frames=5, clips_per_video=2, storage_options=None)
    n = num_train_items(steps=3, global_batch=2, clips_per_video=2)
    ds = build_train_dataset(urls, steps=3, global_batch=2, num_frames=5, decode=decode, clips_per_video=2, seed=5,
                             storage_options=None)
    got = sorted(r["video"].tobytes() for r in ds.take_all())
    want = sorted(v.tobytes() for v in _decode_items({"id": np.arange(n)}, **kw)["video"])
    assert len(got) == len(want) == 2 * n and got == want
