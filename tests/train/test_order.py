"""The fixed training order (`pipeline.train.order`, no Ray): each rank's batch at step s is a pure function of the
config, failed videos shift the stream the same way every time, and a resume at step k continues with the tail of the
undisturbed order, reading no item whose clips were all trained on before k."""

from __future__ import annotations

import json

import pytest

from pipeline.train.order import Cursor, TrainOrder

FAILED = {3, 4, 11, 30}  # item ids whose video yields no clip


def items_of(order: TrainOrder, positions, failed=FAILED):
    """What the Ray stream hands `TrainOrder.batches`: `(position, clips)` of the items that decode, in order; each
    clip names its item and window."""
    for p in positions:
        i = order.item_id(p)
        if i not in failed:
            yield p, [f"{i}:{j}" for j in range(order.clips_per_video)]


def run(order: TrainOrder, steps: int, cursor: Cursor = Cursor(), failed=FAILED, read=None):
    """`steps` batches from `cursor` (all of them from step 0); `read` collects the positions the stream read."""
    read = [] if read is None else read

    def source():
        for p in order.resume_positions(cursor):
            read.append(p)
            yield from items_of(order, [p], failed)
        p = cursor.next
        while True:
            read.append(p)
            yield from items_of(order, [p], failed)
            p += 1

    out = []
    for b in order.batches(cursor, source()):
        if b.step >= cursor.step + steps:
            break
        out.append(b)
    return out


@pytest.mark.parametrize("batch,cpv,mix", [(2, 1, 8), (2, 3, 8), (3, 2, 0), (4, 2, 5)])
def test_order_batches_are_a_pure_function_of_step_rank_world(batch, cpv, mix):
    """Same config, same batches; rank r reads only ids ≡ r mod W, each clip of each decoding item once in order,
    skipping the failed ones; one round is a permutation of its clips, seeded per rank and round."""
    world, steps = 3, 24
    for rank in range(world):
        order = TrainOrder(seed=5, rank=rank, world=world, batch=batch, clips_per_video=cpv, mix_clips=mix)
        got = [b.clips for b in run(order, steps)]
        assert got == [b.clips for b in run(order, steps)]
        assert [b.step for b in run(order, steps)] == list(range(steps)) and all(len(c) == batch for c in got)
        flat = [c for clips in got for c in clips]
        ids = [int(c.split(":")[0]) for c in flat]
        assert all(i % world == rank and i not in FAILED for i in ids)
        assert len(set(flat)) == len(flat)  # no clip twice
        n = order.round_clips
        expect = [c for _, cl in items_of(order, range(10_000)) for c in cl][:len(flat)]
        for r in range(len(flat) // n):  # each round: exactly the next R clips of the stream, mixed or in order
            assert sorted(flat[r * n:(r + 1) * n]) == sorted(expect[r * n:(r + 1) * n])
            if not mix:
                assert flat[r * n:(r + 1) * n] == expect[r * n:(r + 1) * n]
    a = run(TrainOrder(5, 0, world, batch, cpv, mix), steps)
    b = run(TrainOrder(6, 0, world, batch, cpv, mix), steps)
    assert ([x.clips for x in a] != [x.clips for x in b]) == bool(mix)  # the seed changes only the mixing


def test_order_mixing_spreads_one_videos_clips_over_steps():
    """Three clips per video, batch 2, shuffle_buffer_clips 16: some video's clips land in different steps."""
    order = TrainOrder(seed=0, rank=0, world=1, batch=2, clips_per_video=3, mix_clips=16)
    assert order.round_clips == 18 and order.round_steps == 9
    where = {}
    for b in run(order, 18, failed=set()):
        for c in b.clips:
            where.setdefault(c.split(":")[0], set()).add(b.step)
    assert max(len(s) for s in where.values()) == 3


@pytest.mark.parametrize("batch,cpv,mix", [(2, 1, 8), (2, 3, 8), (4, 2, 5)])
def test_order_resume_at_any_step_is_the_tail_without_rereading(batch, cpv, mix):
    """Resuming at step k from the cursor saved after step k (through JSON, as a checkpoint holds it) gives the
    undisturbed batches k, k+1, …; it reads only items with clips still to come, then positions from `next`."""
    world, steps = 2, 20
    for rank in range(world):
        order = TrainOrder(seed=1, rank=rank, world=world, batch=batch, clips_per_video=cpv, mix_clips=mix)
        full = run(order, steps + order.round_steps)  # the last round whole: which clips come after step k
        for k in range(1, steps):
            saved = [{"rank": rank, "order": order.key(), "cursor": full[k - 1].after.to_dict()}]
            cursor = order.resume_cursor(json.loads(json.dumps(saved)), k)
            read = []
            tail = run(order, steps - k, cursor, read=read)
            assert [b.clips for b in tail] == [b.clips for b in full[k:steps]], f"rank {rank}, resumed at {k}"
            before = {c.split(":")[0] for b in full[:k] for c in b.clips}
            after = {c.split(":")[0] for b in full[k:] for c in b.clips}
            for p in read[:len(order.resume_positions(cursor))]:
                assert str(order.item_id(p)) in after  # re-read: a video of the round with clips still to come
            later = read[len(order.resume_positions(cursor)):]
            assert later[:1] in ([], [cursor.next]) and not {str(order.item_id(p)) for p in later} & (before - after)


def test_order_resume_with_another_world_size_goes_on_past_every_read_item():
    """A checkpoint of 2 ranks resumed by 3: each new rank starts past the furthest item read, at the right step,
    and the round it lands in is rebuilt there (a warning, no replay)."""
    old = [TrainOrder(seed=1, rank=r, world=2, batch=2, clips_per_video=1, mix_clips=4) for r in range(2)]
    saved = [{"rank": o.rank, "order": o.key(), "cursor": run(o, 5)[-1].after.to_dict()} for o in old]
    edge = max(Cursor.from_dict(d["cursor"]).next * 2 + d["rank"] for d in saved)
    for r in range(3):
        order = TrainOrder(seed=1, rank=r, world=3, batch=2, clips_per_video=1, mix_clips=4)
        cursor = order.resume_cursor(saved, 5)
        assert cursor.step == 5 and cursor.items is None and order.item_id(cursor.next) >= edge
        got = run(order, 3, cursor)
        assert [b.step for b in got] == [5, 6, 7]
        assert all(int(c.split(":")[0]) >= edge for b in got for c in b.clips)


def test_order_transient_failure_on_resume_fills_from_the_round():
    """An item of the half-trained round that decoded before but not on resume: its slots take the round's other
    clips (the run goes on); every batch keeps its size and its step."""
    order = TrainOrder(seed=2, rank=0, world=1, batch=2, clips_per_video=1, mix_clips=8)
    full = run(order, 8, failed=set())
    cursor = full[2].after  # inside the first round (4 steps)
    lost = order.item_id(order.resume_positions(cursor)[0])
    tail = run(order, 5, cursor, failed={lost})
    assert [b.step for b in tail] == [3, 4, 5, 6, 7] and all(len(b.clips) == 2 for b in tail)
    assert not any(c.startswith(f"{lost}:") for b in tail for c in b.clips)
    assert [b.clips for b in tail[1:]] == [b.clips for b in full[4:]]  # the next rounds: as undisturbed
