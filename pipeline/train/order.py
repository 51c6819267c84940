"""The training order: which clips each rank trains on at each step — fixed by the config, resumable without replay.

Rank r of W reads its own items: position p of rank r is item id `p·W + r` (`pipeline.train.data.source_for_item`
turns an id into a video, `(seed, id, 7)` seeds its windows). With B = per-worker batch, C = `data.clips_per_video`
and K = `data.shuffle_buffer_clips`, the rank's clips are cut into *rounds* of

    R = L · ceil(K / L) clips, L = lcm(B, C)   (R = L when K = 0),   m = R / B steps per round.

Round ρ holds steps ρ·m … (ρ+1)·m − 1. It takes the rank's next items in position order until it holds R clips: an
item gives C clips, or none when its video cannot be decoded (that shifts the later items into the round, the same
way on every run); it puts the R clips in the order of a permutation seeded by `(seed, rank, ρ)` (none when K = 0),
and step ρ·m + o trains on slots o·B … (o+1)·B − 1. K replaces the random local shuffle buffer: the clips of one
video spread over up to m steps, and the mixing is the same on every run.

So the batch of rank r at step s is a pure function of (seed, s, r, W, B, C, K, the corpus listing), given which
videos fail to decode (a property of the corpus: a transient read error is retried by the decoder; one that outlives
its retries makes the order differ from an undisturbed run's from that item on). It does not depend on `steps`: a
run extended by re-running with more steps continues the same order.

A `Cursor` after step k says where the rank's stream stands: `next`, the first position not yet read, and, when k
falls inside a round, `items`, the positions of that round's items. Resuming at k (`TrainOrder.resume_positions`)
reads again only the round's items with clips still to come (slots `perm[o·B:]`), then positions from `next`: no
item whose clips were all trained on before k is decoded again, whatever k. A cursor without `items` inside a round
(a checkpoint of another world size or batch) rebuilds that round from `next` and drops the slots before k.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Iterable, Iterator, Optional

import numpy as np

log = logging.getLogger(__name__)

_MIX = 0x6D6978  # "mix": keeps the permutation's stream apart from the other seeds derived from `seed`


@dataclass(frozen=True)
class Cursor:
    """Where one rank's stream stands after `step` steps (saved per rank in each checkpoint, `data_rank<r>.json`)."""

    step: int = 0
    next: int = 0  # first position of the rank not read yet
    items: Optional[tuple] = ()  # inside a round: positions of the round's items (those that gave clips); None:
    #                               unknown (rebuild the round from `next`)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["items"] = None if self.items is None else list(self.items)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Cursor":
        items = d.get("items")
        return cls(int(d["step"]), int(d["next"]), None if items is None else tuple(int(p) for p in items))


@dataclass(frozen=True)
class Batch:
    """One step's clips of one rank, and the cursor to save once the step is trained."""

    step: int  # 0-based: the batch trained when the state counter goes from `step` to `step + 1`
    clips: list  # B clips (any objects: the Ray stream's `(T, H, W, 3)` uint8 arrays)
    after: Cursor


@dataclass(frozen=True)
class TrainOrder:
    """The order of one rank (module docstring)."""

    seed: int
    rank: int
    world: int
    batch: int  # B: clips per step on this rank
    clips_per_video: int  # C
    mix_clips: int  # K (data.shuffle_buffer_clips): the least number of clips a round mixes; 0 = no mixing

    def __post_init__(self):
        if not (0 <= self.rank < self.world) or self.batch < 1 or self.clips_per_video < 1 or self.mix_clips < 0:
            raise ValueError(f"bad training order {self}: need 0 <= rank < world, batch >= 1, clips_per_video >= 1, "
                             "shuffle_buffer_clips >= 0")

    @property
    def round_clips(self) -> int:
        unit = math.lcm(self.batch, self.clips_per_video)
        return unit * max(1, math.ceil(self.mix_clips / unit))

    @property
    def round_steps(self) -> int:
        return self.round_clips // self.batch

    def item_id(self, pos: int) -> int:
        return pos * self.world + self.rank

    def position(self, item: int) -> int:
        pos, r = divmod(int(item), self.world)
        if r != self.rank:
            raise ValueError(f"item {item} is not rank {self.rank}'s (world {self.world})")
        return pos

    def permutation(self, rnd: int) -> np.ndarray:
        """Output slot j of round `rnd` takes the round's clip `perm[j]` (clips in item order, C per item)."""
        if not self.mix_clips:
            return np.arange(self.round_clips)
        return np.random.default_rng([self.seed, self.rank, rnd, _MIX]).permutation(self.round_clips)

    def key(self) -> dict:
        """What a saved cursor is only valid with (the rank's item positions and its round layout)."""
        return {"seed": self.seed, "world": self.world, "batch": self.batch, "clips_per_video": self.clips_per_video,
                "mix_clips": self.mix_clips}

    def own_record(self, saved: list[dict]) -> dict:
        """This rank's record among a checkpoint's, if it was written in this same order; else {}."""
        return next((d for d in saved if int(d["rank"]) == self.rank and d["order"] == self.key()), {})

    def resume_cursor(self, saved: list[dict], step: int) -> Cursor:
        """This rank's cursor to resume at `step` from a checkpoint's `{"rank", "order", "cursor"}` records (one per
        rank of the run that wrote it; none for a fresh start). Its own record when the order is the same; otherwise
        (another world size, batch or mixing, or a checkpoint without records) a cursor past every item any rank had
        read, which rebuilds the current round there: the run goes on without replaying, in another order."""
        if not saved and step == 0:
            return Cursor()
        own = self.own_record(saved)
        if own:
            cursor = Cursor.from_dict(own["cursor"])
            if cursor.step != step:
                raise ValueError(f"checkpoint at step {step} holds rank {self.rank}'s data cursor of step "
                                 f"{cursor.step}: the checkpoint folder is inconsistent")
            return cursor
        if saved:  # the first item id no rank had read yet
            edge = max(int(d["cursor"]["next"]) * int(d["order"]["world"]) + int(d["rank"]) for d in saved)
        else:  # no records: the items the steps took if no video failed
            edge = math.ceil(step * self.batch * self.world / self.clips_per_video)
        cursor = Cursor(step, max(0, math.ceil((edge - self.rank) / self.world)), None)
        log.warning("rank %d resumes at step %d without its own data cursor (the checkpoint's run had another world "
                    "size, batch or mixing, or none): reading from item %d on, in a new order", self.rank, step,
                    self.item_id(cursor.next))
        return cursor

    def resume_positions(self, cursor: Cursor) -> list[int]:
        """Positions to read again before `cursor.next` when resuming at `cursor`: the current round's items that
        still have clips to come (sorted), or [] at a round boundary or when the round's items are unknown."""
        o = cursor.step % self.round_steps
        if not o or not cursor.items:
            return []
        perm = self.permutation(cursor.step // self.round_steps)
        c = self.clips_per_video
        return sorted({cursor.items[s // c] for s in perm[o * self.batch:] if s // c < len(cursor.items)})

    def batches(self, cursor: Cursor, items: Iterable[tuple[int, list]]) -> Iterator[Batch]:
        """The rank's batches from `cursor.step` on, given its items in position order: first those of
        `resume_positions(cursor)`, then positions `cursor.next`, `cursor.next + 1`, … (an item that failed is simply
        absent). Items are `(position, clips)`; an item with other than C clips counts as failed. Ends when `items`
        does."""
        stream = _Items(items, self.clips_per_video)
        m, b = self.round_steps, self.batch
        step, rnd, o = cursor.step, cursor.step // m, cursor.step % m
        if o and cursor.items:
            positions, slots, last = cursor.items, self._resumed_round(cursor, stream), cursor.next
        else:
            positions, slots, last = self._fill(stream, rnd)
        while positions is not None:
            for o in range(o, m):
                after = Cursor(step + 1, last, tuple(positions) if o + 1 < m else ())
                yield Batch(step, slots[o * b:(o + 1) * b], after)
                step += 1
            slots = None  # the finished round's clips are not held while the next round fills
            rnd, o = rnd + 1, 0
            positions, slots, last = self._fill(stream, rnd)

    def _fill(self, stream: "_Items", rnd: int) -> tuple[Optional[list], list, int]:
        """Round `rnd` from the stream: `(item positions, output slots, next position)`, or `(None, [], 0)` when the
        items end first."""
        positions, clips = [], []
        while len(clips) < self.round_clips:
            got = stream.next()
            if got is None:
                return None, [], 0
            positions.append(got[0])
            clips += got[1]
        return positions, [clips[j] for j in self.permutation(rnd)], positions[-1] + 1

    def _resumed_round(self, cursor: Cursor, stream: "_Items") -> list:
        """The current round's output slots, filled for the slots still to come (the others `None`), from the items
        of `resume_positions` read again. A video that decoded before but not now (a transient error) leaves its
        slots to the round's other clips, with a warning: the run goes on, its order differs from then on."""
        c, o, b = self.clips_per_video, cursor.step % self.round_steps, self.batch
        want = set(self.resume_positions(cursor))
        got = {}
        while want - set(got):
            nxt = stream.peek()
            if nxt is None or nxt[0] not in want:
                break
            pos, clips = stream.next()
            got[pos] = clips
        index = {p: i for i, p in enumerate(cursor.items)}
        perm = self.permutation(cursor.step // self.round_steps)
        out = [None] * self.round_clips
        for j in range(o * b, self.round_clips):
            pos = cursor.items[perm[j] // c]
            if pos in got:
                out[j] = got[pos][perm[j] - c * index[pos]]
        missing = [j for j in range(o * b, self.round_clips) if out[j] is None]
        if missing:
            have = [out[j] for j in range(o * b, self.round_clips) if out[j] is not None]
            log.warning("resuming at step %d: items %s of the current round gave no clip this time (they did before); "
                        "their %d slot(s) take the round's other clips", cursor.step,
                        sorted(want - set(got))[:8], len(missing))
            if not have:
                raise RuntimeError(f"resuming at step {cursor.step}: none of the current round's videos decodes any "
                                   "more (see the 'training input skipped' warnings)")
            for i, j in enumerate(missing):
                out[j] = have[i % len(have)]
        return out


class _Items:
    """`(position, clips)` items with one of lookahead; items with other than `c` clips are dropped (logged)."""

    def __init__(self, items: Iterable[tuple[int, list]], c: int):
        self._it, self._c, self._head = iter(items), c, None

    def peek(self):
        if self._head is None:
            for pos, clips in self._it:
                if len(clips) == self._c:
                    self._head = (int(pos), list(clips))
                    break
                if clips:
                    log.warning("training item at position %d gave %d clips, not %d: skipped", pos, len(clips),
                                self._c)
        return self._head

    def next(self):
        got = self.peek()
        self._head = None
        return got
