"""The training item stream: item ids generated lazily, so a run of any length starts (and restarts) in seconds.

Each item id names one training video and its random windows (`pipeline.train.data.source_for_item` and the seed
`(seed, item, 7)`), so the ids alone fix which clips a run trains on; this module only decides how they reach the
decode tasks.

Why not `ray.data.range(n_items, override_num_blocks=ceil(n_items / 2))` (the first version): Ray Data creates
every read task and `ray.put`s it before the first one runs. The paper schedule is 800,016 items, 400,008 blocks:
about 20 minutes to the first batch on a 2-core machine, and again after every `FailureConfig` restart (the
dataset re-executes). Here a few read tasks (one per `ITEMS_PER_READ` ids) each yield their ids one per block, as
the decode stage asks for them:

* the reads reserve no CPU (`num_cpus=0`): a read task spends its life paused by Ray Data's backpressure, and a
  CPU slot held by a paused generator would be a decode task that never runs;
* the dataset's `target_max_block_size` is 1 byte, so Ray Data's block shaping never merges ids back into big
  blocks: every id is its own block, and every decode task decodes one item (the decode stage then yields each
  clip as its own block, so the first batch waits for `batch` clips, not for a whole task's clips);
* read task r yields its `ITEMS_PER_READ` ids in order, and Ray Data runs the read tasks in order.

Each training rank reads its own items (`pipeline/train/order.py`: position p of rank r is id `p·W + r`), from the
position its checkpoint says, with the few items of a half-trained round listed first (`head`): a restart at step
k of 10^6 items starts where step k left off, it does not replay the stream.
"""

from __future__ import annotations

import math

import numpy as np

# Ids per read task: few read tasks (13 for the paper schedule) and blocks of 8 bytes each, so a read task's state
# is a counter, whatever the run's length.
ITEMS_PER_READ = 65536


def item_ranges(n_items: int, per_read: int = ITEMS_PER_READ, first: int = 0) -> list[tuple[int, int]]:
    """`[start, stop)` position ranges, one per read task, covering `first … first + n_items − 1` in order."""
    stop = first + n_items
    return [(s, min(s + per_read, stop)) for s in range(first, stop, per_read)]


def _ids(start: int, stop: int, world: int = 1, rank: int = 0):
    import pyarrow as pa

    for i in range(start, stop):
        yield pa.table({"id": np.array([i * world + rank], np.int64)})


def _listed(ids: tuple):
    import pyarrow as pa

    for i in ids:
        yield pa.table({"id": np.array([i], np.int64)})


def item_dataset(n_items: int, per_read: int = ITEMS_PER_READ, *, first: int = 0, world: int = 1, rank: int = 0,
                 head: tuple = ()):
    """A Ray Dataset of rows `{"id": int64}`, one id per block, made lazily: the ids `head` (in that order), then
    `p·world + rank` for the positions p = first … first + n_items − 1 (default: ids `0 … n_items − 1`). Read tasks
    run in this order; a consumer that needs the rows in it too sets `preserve_order` (pipeline/train/stream.py)."""
    import pyarrow as pa
    import ray
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    schema = pa.schema([("id", pa.int64())])
    head = tuple(int(i) for i in head)
    tasks = [(lambda ids=head: _listed(ids), len(head))] if head else []
    tasks += [(lambda s=s, e=e: _ids(s, e, world, rank), e - s) for s, e in item_ranges(n_items, per_read, first)]

    class TrainItems(Datasource):
        def estimate_inmemory_data_size(self):
            return 8 * (n_items + len(head))

        def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None):
            return [ReadTask(fn, BlockMetadata(num_rows=n, size_bytes=8 * n, input_files=None, exec_stats=None),
                             schema=schema)
                    for fn, n in tasks]

    ds = ray.data.read_datasource(TrainItems(), override_num_blocks=max(1, len(tasks)), num_cpus=0, concurrency=1)
    ds.context.target_max_block_size = 1  # this dataset's copy: never merge ids (nor clips) into bigger blocks
    return ds


def n_read_tasks(n_items: int) -> int:
    """How many read tasks `item_dataset` makes (the benchmark prints it beside the old block count)."""
    return max(1, math.ceil(n_items / ITEMS_PER_READ))
