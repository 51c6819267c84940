"""The split stage of the tokenize chain: long inputs become several decode tasks, short ones share one.

    .repartition(per_task)              plan rows, a decode task's worth of inputs per block (as before)
    .map_batches(SplitLong)             cheap tasks: each plan batch -> TASK rows, one per decode task: the batch's
                                        short inputs together, and every segment of a long input alone
    .repartition(1).map_batches(DecodeInputs, batch_size=1)   one TASK row per decode task

Where the cut is decided, and why here: the decode stage must know an input's probe to cut it, and at 10^6 inputs
the driver cannot probe them one by one; an input's duration is not in the listing. So the split runs in the chain,
in parallel, as the plan streams: `SplitLong` probes (from the container header, in the isolated decode child:
`pipeline.decode.segments.find_segments`) only the inputs whose listed size says they may be long
(`segments.worth_probing`: at least `decode.segment_s` seconds at 1 Mbit/s; an input listed without a size is
asked for it first, one HEAD request the decode task would make anyway). A corpus of short
clips thus pays one cheap task per batch and no read. A long MP4's row in the job's video index (`index=`, else
`<output>/_index`) is read instead of its header when it is there (a re-run, a corpus indexed by another job);
otherwise the split probes the header once and writes the row, and each segment task reads that row instead of
probing again (`DecodeInputs`). Probing inside the decode task and emitting sub-tasks from there is not
possible in a Ray Data chain (an operator cannot feed work back to itself), and a second pass would start the
segments only after everything else.

Each segment row is the input's plan row (same `prev_windows`: the input's windows committed before this run; its
`skip_windows` cut to the segment) plus `segment_first` / `segment_stop`. The exactly-once protocol does not change
(`pipeline/tokenize/commit.py`): windows are keyed by (source, window_index) whichever task decoded them; the driver
writes the input's one `ok` row when its committed windows reach `num_windows`, which only happens once every
segment is in; a segment that fails commits the input's failure row from its task (`DecodeInputs`; pending when the
failure is transient), so the input is never `ok` and a re-run plans it again with the windows already committed
skipped (segments whose windows are all committed are not emitted again). Pure Arrow plus the decode package: no Ray.
"""

from __future__ import annotations

import logging

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.decode import DecodeConfig
from pipeline.decode.index import VideoIndex, identity
from pipeline.decode.segments import find_segments, worth_probing
from pipeline.inputs import stat_source

log = logging.getLogger(__name__)

SEGMENT_FIELDS = [
    pa.field("segment_first", pa.int32()),  # first window of the segment (null: the whole input)
    pa.field("segment_stop", pa.int32()),  # one past its last window
]
TASK_COLUMN = "inputs"  # TASK rows: one list<struct<plan row + SEGMENT_FIELDS>> per decode task
SPLIT_CPUS = 0.25  # a split task reads a few headers at most; it must not hold a decode slot


def task_type(plan_schema: pa.Schema) -> pa.DataType:
    fields = [f for f in plan_schema if f.name not in {s.name for s in SEGMENT_FIELDS}]
    return pa.list_(pa.struct(fields + SEGMENT_FIELDS))


def task_inputs(table: pa.Table) -> pa.Table:
    """The plan rows of TASK rows (flattened); a plan table passes unchanged."""
    if TASK_COLUMN not in table.column_names:
        return table
    flat = pc.list_flatten(table.column(TASK_COLUMN))
    chunks = [pa.Table.from_struct_array(c) for c in flat.chunks if len(c)]
    if not chunks:
        return pa.Table.from_struct_array(pa.array([], type=table.schema.field(TASK_COLUMN).type.value_type))
    return pa.concat_tables(chunks)


class SplitLong:
    """`map_batches` body: plan rows -> TASK rows (module docstring). Segments come first (the longest work
    starts first), then one row holding the batch's inputs that stay whole."""

    def __init__(self, decode_cfg: DecodeConfig, storage_options: dict | None = None, index: VideoIndex | None = None):
        self.cfg, self.opts = decode_cfg, storage_options or {}
        self.index = index  # the job's video index: a long input's row is read there, or written after its probe

    def __call__(self, plan: pa.Table) -> pa.Table:
        whole: list[dict] = []
        tasks: list[list[dict]] = []
        for row in plan.to_pylist():
            if row.get("source_size") is None and self.cfg.segment_s:  # manifests may carry no size: ask the store
                try:  # once (a HEAD), here instead of in the decode task; a failure is the decode's to report
                    row.update({k: v for k, v in stat_source(row["source"], self.opts).items() if k != "source"})
                except Exception:
                    pass
            parts = self._segments(row)
            if parts:
                tasks.extend([p] for p in parts)
            else:
                whole.append({**row, "segment_first": None, "segment_stop": None})
        if whole:
            tasks.append(whole)
        return pa.table({TASK_COLUMN: pa.array(tasks, type=task_type(plan.schema))})

    def _segments(self, row: dict) -> list[dict]:
        """The segment rows of `row` that still have windows to decode; [] keeps the input whole."""
        if not worth_probing(row.get("source_size"), self.cfg):
            return []
        segs = find_segments(row["source"], self.cfg, self.opts, self.index, identity(row))
        if segs is None:
            return []
        skip = [int(w) for w in row.get("skip_windows") or ()]
        parts = []
        for a, b in segs.ranges:
            mine = [w for w in skip if a <= w < b]
            if len(mine) < b - a:  # a segment whose windows are all committed has nothing to do
                parts.append({**row, "skip_windows": mine, "segment_first": a, "segment_stop": b})
        if not parts:  # nothing left at all (the plan settles such inputs without decoding; kept whole to be safe)
            return []
        log.info("%s: %.0f s sampled, cut into %d segments of %d windows (%d to decode)", row["source"],
                 segs.sampled_s, len(segs.ranges), segs.num_windows, len(parts))
        return parts
