"""The training item stream: ids `0 … n_items − 1`, generated lazily so a run of any length starts in seconds.

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
* read task r yields ids `r·ITEMS_PER_READ … (r+1)·ITEMS_PER_READ − 1` in order, and Ray Data runs the read tasks
  in order, so the decode tasks take ids roughly in increasing order, as they did (the trainer mixes clips through
  its local shuffle buffer anyway; the order of clips in a batch was never fixed).
"""

from __future__ import annotations

import math

import numpy as np

# Ids per read task: few read tasks (13 for the paper schedule) and blocks of 8 bytes each, so a read task's state
# is a counter, whatever the run's length.
ITEMS_PER_READ = 65536


def item_ranges(n_items: int, per_read: int = ITEMS_PER_READ) -> list[tuple[int, int]]:
    """`[start, stop)` id ranges, one per read task, covering `0 … n_items − 1` in order."""
    return [(s, min(s + per_read, n_items)) for s in range(0, n_items, per_read)]


def _ids(start: int, stop: int):
    import pyarrow as pa

    for i in range(start, stop):
        yield pa.table({"id": np.array([i], np.int64)})


def item_dataset(n_items: int, per_read: int = ITEMS_PER_READ):
    """A Ray Dataset of rows `{"id": int64}`, ids `0 … n_items − 1` each once, one id per block, made lazily."""
    import pyarrow as pa
    import ray
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    ranges = item_ranges(n_items, per_read)
    schema = pa.schema([("id", pa.int64())])

    class TrainItems(Datasource):
        def estimate_inmemory_data_size(self):
            return 8 * n_items

        def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None):
            return [ReadTask(lambda s=s, e=e: _ids(s, e),
                             BlockMetadata(num_rows=e - s, size_bytes=8 * (e - s), input_files=None, exec_stats=None),
                             schema=schema)
                    for s, e in ranges]

    ds = ray.data.read_datasource(TrainItems(), override_num_blocks=max(1, len(ranges)), num_cpus=0,
                                  concurrency=1)
    ds.context.target_max_block_size = 1  # this dataset's copy: never merge ids (nor clips) into bigger blocks
    return ds


def n_read_tasks(n_items: int) -> int:
    """How many read tasks `item_dataset` makes (the benchmark prints it beside the old block count)."""
    return max(1, math.ceil(n_items / ITEMS_PER_READ))
