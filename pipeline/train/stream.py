"""One training rank's clips on Ray Data: its own items, decoded in item order, cut into `TrainOrder` batches.

Each Ray Train worker builds its dataset itself (the trainer gets no `datasets=`): the ids of its items from
`pipeline.train.items.item_dataset` (the rank's positions from its cursor on, the half-trained round's items first),
decoded by the tasks of `pipeline.train.data.build_train_dataset`, with Ray Data's `preserve_order`, so the clips
arrive in item order whatever order the decode tasks finish in; `pipeline.train.order` makes the batches. Why not one
dataset on the driver: Ray Train re-executes a trainer's dataset from its plan after a `FailureConfig` restart (from
item 0, while the workers resume at step k), and `get_dataset_shard`'s `streaming_split` hands blocks to the ranks in
the order the tasks finish, so no rank's batches were reproducible.

Sizes: the W ranks' executors share Ray Data's object-store budget (each gets 1/W of it, as the one dataset had in
all), `decode_task.concurrency` (each 1/W, at least 1) and the CPUs the trainers leave free (each rank's executor is
limited to 1/W of them, at least one decode task's worth: `cpu_share`). The CPU share is not a nicety: Ray Data's
autoscaling coordinator hands the cluster's resources to concurrent executors in the order they asked, so without a
limit the first rank's executor can hold every free CPU while another rank's gets none — and a rank with no clips
stalls the DDP all-reduce the first rank then waits in, forever (seen on a 4-CPU local Ray with two trainers).
Known and not yet understood: with the CPU share in place, a training run still stalled the same way three times in
full test-suite runs, each time while other Ray-heavy tests ran on the same 2 cores (once in a fresh private Ray):
one CPU held outside the trainers, a decode task "running" without progress, Ray Data logging `Cluster resources are
not enough to run any task from MapBatches(_decode_items)`, one rank spinning in the DDP all-reduce. Run alone the
same tests pass (they run alone under `make test`: marker `alone`). On a cluster, watch the run's `_logs/` for that
line. Ruled out since: Ray Data's coordinator keeps a killed process's executor registered until its request expires
(180 s) and splits the CPUs left over among all registered executors by integer division, so restarted ranks can be
granted 0 CPUs; reproduced (two executors killed, two new ones on 2 CPUs: all four granted none), the new executors
still ran their tasks within 4 s. Whatever the cause, a rank no longer waits forever: `GuardedBatches` fails its
worker after `data.stall_timeout_s` without a batch, and `FailureConfig` restarts the group from the last checkpoint.
A dataset
covers the items the remaining steps need if no video fails, plus a round; when failed videos leave it short, the
next positions are opened, and a whole span of items without a clip stops the run with a clear error.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import queue
import threading
from typing import Iterator

from pipeline.train.data import build_train_dataset
from pipeline.train.items import item_dataset
from pipeline.train.order import Batch, Cursor, TrainOrder

log = logging.getLogger(__name__)

OBJECT_STORE_FRACTION = 0.5  # Ray Data's default share of the object store for one executor, split over the ranks


class RankStream:
    """The batches of one rank from `cursor` on: iterate it (each `Batch` carries the cursor to checkpoint after its
    step); `close()` stops the rank's decode tasks."""

    def __init__(self, run, order: TrainOrder, cursor: Cursor, urls: list[str]):
        """`run`: the stage's `pipeline.train.setup.TrainRun` (decode settings, storage options, index URL)."""
        self.run, self.cfg, self.order, self.cursor, self.urls = run, run.cfg, order, cursor, list(urls)
        self._open = []  # the dataset iterator being read, to close it early

    def __iter__(self) -> Iterator[Batch]:
        return self.order.batches(self.cursor, self._items())

    def close(self) -> None:
        for it in self._open:
            it.close()
        self._open = []

    def _span(self) -> int:
        """Items of one dataset: enough for the remaining steps when no video fails, plus a round."""
        o = self.order
        left = max(0, self.cfg.steps - self.cursor.step) * o.batch + o.round_clips
        return max(1, math.ceil(left / o.clips_per_video))

    def dataset(self, head: tuple, first: int, n: int):
        """Ray Dataset of rows `{"video": (T, H, W, 3) uint8, "item": id}` in item order: ids `head`, then the
        rank's positions `first … first + n − 1`."""
        run, cfg, o = self.run, self.cfg, self.order
        task = cfg.decode_task
        if task.concurrency:
            task = dataclasses.replace(task, concurrency=max(1, task.concurrency // o.world))
        items = item_dataset(n, first=first, world=o.world, rank=o.rank, head=head)
        ds = build_train_dataset(self.urls, steps=cfg.steps, global_batch=cfg.batch_size, num_frames=run.num_frames,
                                 decode=run.decode, clips_per_video=o.clips_per_video, seed=cfg.seed,
                                 storage_options=run.storage_options, decode_task=task, frames=cfg.data.frames,
                                 items=items, index=run.paths.index)
        ds.context.execution_options.preserve_order = True  # this dataset's copy of the context
        ds.context.override_object_store_memory_limit_fraction = OBJECT_STORE_FRACTION / o.world
        limits = ds.context.execution_options.resource_limits
        ds.context.execution_options.resource_limits = limits.copy(cpu=cpu_share(cfg, o.world))
        return ds

    def _items(self) -> Iterator[tuple[int, list]]:
        """`(position, clips)` of the rank's items that gave clips, in the order `TrainOrder.batches` reads them."""
        o = self.order
        head = tuple(o.item_id(p) for p in o.resume_positions(self.cursor))
        first = self.cursor.next
        while True:
            n = self._span()
            got = False
            for pos, clips in self._grouped(self.dataset(head, first, n)):
                got = True
                yield pos, clips
            if not got:
                raise RuntimeError(f"rank {o.rank}: none of {n + len(head)} training items from position {first} "
                                   "gave a clip: every input failed to decode or is shorter than one clip (see the "
                                   "'training input skipped' warnings)")
            log.info("rank %d: positions %d…%d read; opening the next %d (failed videos left the stream short)",
                     o.rank, first, first + n - 1, n)
            head, first = (), first + n

    def _grouped(self, ds) -> Iterator[tuple[int, list]]:
        """The dataset's clips grouped by item: an item is complete at C clips (or when the next item's come)."""
        c = self.order.clips_per_video
        prefetch = max(1, self.cfg.data.prefetch_batches * self.order.batch)  # blocks are single clips
        it = iter(ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=prefetch))
        self._open.append(it)
        item, clips = None, []
        try:
            for block in it:
                for video, i in zip(block["video"], block["item"]):
                    if i != item and clips:
                        yield self.order.position(item), clips
                        clips = []
                    item = int(i)
                    clips.append(video)
                    if len(clips) == c:
                        yield self.order.position(item), clips
                        clips = []
            if clips:
                yield self.order.position(item), clips
        finally:
            it.close()
            if it in self._open:
                self._open.remove(it)


def cpu_share(cfg, world: int) -> float:
    """CPUs one rank's executor may use: the cluster's CPUs now, less the trainers' (`num_workers x cpus_per_worker`),
    split over the W ranks, and never less than one decode task's `decode_task.num_cpus` (module docstring)."""
    import ray

    free = float(ray.cluster_resources().get("CPU", 0.0)) - cfg.num_workers * float(cfg.cpus_per_worker)
    return max(float(cfg.decode_task.num_cpus), free / max(world, 1))


class StalledStream(RuntimeError):
    """A rank waited longer than `data.stall_timeout_s` for its next batch."""


class GuardedBatches:
    """The batches of `stream` read ahead by one thread of their own, handed out with a time limit.

    Why: a rank whose stream gives nothing (its decode tasks never scheduled, a store that hangs below every
    timeout) would hold the other ranks in the DDP all-reduce until torch's collective timeout (30 min by default).
    `next()` raises `StalledStream` after `timeout_s` without a batch instead: the worker fails, Ray Train's
    `FailureConfig` restarts the group from the last checkpoint, and the run goes on (the cursor makes the restart
    train on the same batches). The thread does every stream call (iterating and `close()`), so nothing closes a
    Ray Data iterator from outside the thread that runs it; `close()` stops it and waits briefly."""

    def __init__(self, stream, timeout_s: float, depth: int = 1):
        self.stream, self.timeout_s = stream, float(timeout_s)
        self._q: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="rank-batches", daemon=True)
        self._thread.start()

    _END = object()

    def _pump(self) -> None:
        item, batches = self._END, None
        try:
            batches = iter(self.stream)
            for batch in batches:
                if not self._put(batch):
                    return
        except BaseException as e:  # handed to the consumer, raised there
            item = e
        finally:
            try:
                if batches is not None and hasattr(batches, "close"):
                    batches.close()
                self.stream.close()
            finally:
                self._put(item)

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        return self

    def __next__(self):
        try:
            item = self._q.get(timeout=self.timeout_s) if self.timeout_s > 0 else self._q.get()
        except queue.Empty:
            raise StalledStream(
                f"no training batch for {self.timeout_s:g} s (data.stall_timeout_s): this rank's data stream is "
                "stalled (its decode tasks get no CPU, or reads hang; see the run's _logs/ for Ray Data's "
                "'Cluster resources are not enough' line); failing the worker so that FailureConfig restarts the "
                "group from the last checkpoint") from None
        if item is self._END:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self, wait_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout=wait_s)
