"""The Ray Data chain of the tokenize job: plan files -> decode windows (CPU) -> VidTok encoder (GPU actors) -> shards.

    plan_dataset(plan).repartition     pending inputs, a decode task's worth per block (streaming split; the driver
                                       sizes it by input bytes: `TokenizeDecodeTaskConfig.inputs_for`)
      .map_batches(SplitLong)          with `decode.segment_s`: a long input becomes one decode task per segment
                                       (`pipeline/tokenize/segments.py`), the batch's other inputs one task together
      .map_batches(DecodeInputs)       CPU tasks: one input -> its windows (pipeline.decode), WINDOW_SCHEMA rows; an
                                       input that yields no window (a failure) commits its own status row here and
                                       sends nothing on
      .map_batches(TokenizeClips)      actor pool (min/max from config), num_gpus per actor, model loaded once per
                                       actor; bf16 autocast on CUDA, fp32 on CPU; ENCODED rows, pixels dropped
      .map_batches(WriteTokenShard)    batch = one shard: commit it atomically, return WRITTEN rows
    driver: iterates the WRITTEN stream and commits status rows (pipeline/tokenize/run.py)

Fleet faults (docs/operations.md §6): the tokenizer halves a batch that runs out of GPU memory down to one window
(`pipeline/tokenize/oom.py`; a window that never fits becomes an `error` row, settled `too_large` by the driver); the
decode stage stops the run when its node's decoder is broken (`pipeline/tokenize/machine.py`) and reports each input
it is on to `RunNodes` (every HEARTBEAT_S, from a side thread), so the tail can name the oldest inputs in flight.

Every stage takes and returns Arrow tables of the schemas in `pipeline/tokenize/schema.py`, and each is a plain
callable, so the unit tests call them on tables without a cluster. Where a stage ran (node, device) is reported once
per process to a small `RunNodes` actor (`pipeline/tokenize/nodes.py`), not carried in the rows.

Imports: torch and Ray are imported inside the functions that need them. Decode tasks load this module too, and
torch would cost them ~900 MB of resident memory each; TokenizeClips must also run where Ray is absent (the GPU
benchmark machine).

Memory stays bounded whatever the corpus size: decoded windows (3.3 MB each at 17x256x256x3) travel in blocks of
`ray.target_block_mb`, decode tasks take a bounded number of inputs each, and Ray Data's streaming executor
backpressures the decode stage when the object store fills. Frames never reach the driver.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa

from pipeline.decode import DecodeConfig, iter_windows
from pipeline.decode.index import VideoIndex
from pipeline.decode.resample import select_frames
from pipeline.decode.spatial import crop_dropped
from pipeline.decode.status import IO_ERROR, DecoderUnavailable
from pipeline.decode.windows import WindowRange
from pipeline.frames.build import GroupWriter, WindowsFromPieces, cache_decode_config, segment_rows
from pipeline.inputs import stat_source
from pipeline.storage import OutputLayout, is_transient_error, local_copy
from pipeline.tokenize.commit import new_run_id, status_shard_name, token_shard_name
from pipeline.tokenize.config import RetryConfig
from pipeline.tokenize.failures import RetriedStream
from pipeline.tokenize.machine import MachineBroken, MachineCheck
from pipeline.tokenize.nodes import CurrentInput, RunNodes, node_name, report_where
from pipeline.tokenize.oom import AdaptiveBatches
from pipeline.tokenize.segments import SPLIT_CPUS, SplitLong, task_inputs
from pipeline.tokenize.schema import (
    WINDOW_SCHEMA, encoded_table, failed_table, frames_array, status_table, token_table, window_table, written_table,
)

log = logging.getLogger(__name__)

WINDOWS_PER_YIELD = 4  # a few windows per yielded table: Ray cuts blocks at target_max_block_size
FRAMES_COMMIT_INPUTS = 8  # frames side output: inputs per frames commit (their last windows wait for it)
INDEX_WRITERS = 4  # threads per decode task writing video index rows (one small Parquet PUT per input)
TILE_FRAMES = 16  # v1.1 temporal tile (t_chunk_enc) for whole-clip pieces, as the official long-video inference


_machine: dict = {}  # this process's MachineCheck of the current run (pipeline/tokenize/machine.py)


def _machine_check(run_id: str, burst: int) -> MachineCheck:
    """This process's check for run `run_id`: a Ray worker process outlives a run (tests, several runs of one
    driver), and each run judges the start of its own inputs."""
    if _machine.get("key") != (run_id, burst):
        _machine.update(key=(run_id, burst), check=MachineCheck(burst))
    return _machine["check"]


# ----------------------------------------------------------------------------------------------------- decode stage
class DecodeInputs:
    """`map_batches` body (a task): PLAN_SCHEMA rows -> WINDOW_SCHEMA tables, one input at a time.

    Never raises for a bad input: `iter_windows` classifies it, transient outcomes are decoded again under `retry`
    (`pipeline/tokenize/failures.py`, skipping the windows an earlier try already sent), and the inputs of the batch
    that yield no window (or fail after some) get their status rows committed to `layout` right here, one shard per
    batch (named by run and sources, so a retried task rewrites the same file; one commit per batch, not per input:
    `benchmarks/small_clips.py`); `final = false` when the failure was transient to the end. Windows are yielded as
    the decode child streams them, `WINDOWS_PER_YIELD` per table: the task holds a few windows, never a video.
    """

    def __init__(self, decode_cfg: DecodeConfig, layout: OutputLayout, nodes=None, retry: RetryConfig | None = None,
                 run_id: str | None = None, machine_burst: int = 0, index: str = "", frames=None):
        self.cfg, self.layout, self.nodes = decode_cfg, layout, nodes
        self.index = VideoIndex.of_job(layout, index)  # keyed rows: `index=`, else <output>/_index (decode/index.py)
        self.retry, self.run_id = retry or RetryConfig(), run_id or new_run_id()
        self.machine_burst = machine_burst  # decode_task.machine_burst; 0 (unit tests' default): the rule is off
        self.frames = frames if frames is not None and frames.output else None  # `frames.*`: the side output

    def __call__(self, plan: pa.Table):
        report_where(self.nodes, "decode")
        opts = self.layout.storage_options
        check = _machine_check(self.run_id, self.machine_burst)
        current = CurrentInput(self.nodes)
        # index rows are written beside the decoding (a PUT per input would otherwise add its latency to every
        # input: on tiny clips more than their decode); the task ends when they are written
        self._writes = ThreadPoolExecutor(max_workers=INDEX_WRITERS, thread_name_prefix="index-row")
        try:
            yield from self._decode(task_inputs(plan), opts, check, current)
        finally:
            self._writes.shutdown(wait=True)
            current.close()

    def _decode(self, plan: pa.Table, opts: dict, check: MachineCheck, current: "CurrentInput"):
        failed: list[dict] = []  # status rows of inputs without windows: one shard per task, not one per input
        side = _FramesSide(self, opts) if self.frames is not None else None
        for row in plan.to_pylist():
            current.set(row["source"])
            skip = frozenset(int(w) for w in row.pop("skip_windows") or ())
            first, stop = row.pop("segment_first", None), row.pop("segment_stop", None)
            segment = None if first is None else WindowRange(int(first), int(stop))  # pipeline/tokenize/segments.py
            if row.get("source_size") is None:  # manifests may not carry size / ETag: ask the store once
                try:
                    row.update({k: v for k, v in stat_source(row["source"], opts).items() if k != "source"})
                except Exception:  # the decode below reports the io_error with its message
                    pass
            identity = row  # source, size, etag, mtime as listed: an index row counts for that object only
            # an input with windows committed before was probed then, a segment's by the split stage: its row in the
            # video index spares the probe
            known = self.index.try_find(identity) if skip or row.get("prev_windows") or segment is not None else None
            cached = row.pop("frames_cached", None)  # the plan's word: its frames are in the cache already
            if side is not None and not cached:  # one decode: frames cache rows and windows
                stream, hold = side.stream(row, skip, known, segment), 1
            else:
                stream, hold = RetriedStream(lambda done: iter_windows(row["source"], self.cfg, storage_options=opts,
                                                                       skip_windows=done, choose=segment, info=known),
                                             skip, self.retry, row["source"]), 0
            chunk = []
            try:
                for w in stream:  # windows arrive as the child cuts them
                    chunk.append(w)
                    if len(chunk) == WINDOWS_PER_YIELD + hold or (self.cfg.whole_clip and chunk):
                        # whole clip: pieces differ in length, one table each; with the side output the input's
                        # last window waits for the frames commit (`hold`)
                        yield self._table(row, stream.result, chunk[:len(chunk) - hold], stream.tries)
                        chunk = chunk[len(chunk) - hold:]
            except DecoderUnavailable as e:  # no file was read: the machine (pipeline/tokenize/machine.py)
                self._stop(check, failed, "decoder unavailable", str(e))
            out = stream.outcome
            res = out.result
            probed = getattr(stream.current, "info", None)
            # rows for inputs that gave windows (one segment writes it): an input without any (too short, broken) is
            # not worth a write, which costs ~2 ms of CPU where a too-short clip's whole probe costs about as much
            if probed is not None and res.status == "ok" and (segment is None or segment.first == 0):
                self._writes.submit(self.index.try_keep, dict(identity), probed)
            if hold:  # its frames' index row (or nothing: left for the next run); its last window waits
                if len(chunk) > 1:
                    yield self._table(row, res, chunk[:-1], out.tries)
                yield from side.finish(row, stream, self._table(row, res, chunk[-1:], out.tries) if chunk else None,
                                       failed)
            elif chunk:  # windows before a failure are good: they go on, and the row below counts them
                yield self._table(row, res, chunk, out.tries)
            status = {"status": res.status}
            if res.status != "ok" or (not stream.sent and segment is None):
                # a segment that went well writes nothing: the driver's `ok` row stands for all segments
                # ok: every window was committed before; a failure after `sent` windows: those stay committed and
                # this row says how many there are (the driver settles the input by this row; a segment counts its
                # own and those of earlier runs, not those of the input's other segments in this run)
                done = res.num_windows_total if res.status == "ok" else int(row["prev_windows"] or 0) + stream.sent
                status = {**self._info(row, res), "attempts": out.tries, "status": res.status,
                          "message": res.message or "", "num_windows": done, "final": out.final}
                failed.append(status)
            if check.see(status):
                self._stop(check, failed, check.rows[0]["status"], check.rows[0]["message"])
        if side is not None:  # the frames commit, then the windows it held back (or pending rows: `_FramesSide`)
            yield from side.commit(failed)
        if failed:  # after the batch: a killed task leaves no row, and its inputs are decoded again
            self.layout.write_table(status_shard_name([r["source"] for r in failed], self.run_id),
                                    status_table(failed, self.run_id))
            if self.nodes is not None:  # live progress: the driver reads these rows back only at the end
                self.nodes.finish.remote([(r["source"], r["status"], r["source_duration_s"]) for r in failed])

    def _stop(self, check: MachineCheck, failed: list[dict], reason: str, detail: str):
        """The machine is broken: commit this task's rows with the burst's made pending, and raise MachineBroken."""
        node = node_name()
        pending = check.pending_rows(node)
        mine = {r["source"] for r in pending}
        rows = [r for r in failed if r["source"] not in mine] + pending
        if rows:
            self.layout.write_table(status_shard_name([r["source"] for r in rows], self.run_id),
                                    status_table(rows, self.run_id))
        log.error("decode environment broken on %s: %s (%s)", node, reason, detail)
        raise MachineBroken(node, reason, detail, sorted(mine))

    @staticmethod
    def _info(row: dict, res) -> dict:
        return {**row, "source_fps": res.source_fps or None, "source_duration_s": res.duration_s or None,
                "decode_backend": res.backend or None}

    def _table(self, row: dict, res, chunk: list, tries: int) -> pa.Table:
        h, w = chunk[0].frames.shape[1:3]
        base = {**self._info(row, res), "attempts": tries, "num_windows": res.num_windows_total,
                "sample_fps": float(self.cfg.fps),
                "bucket": f"{h}x{w}" if self.cfg.buckets else None,
                "crop_dropped": round(crop_dropped(res.height, res.width, (h, w)), 6)}
        return window_table(base, chunk, np.stack([w.frames for w in chunk]))


class _FramesSide:
    """The decode stage's side output (`frames.output`; `pipeline/frames/`): each input of the task whose frames are
    not cached yet is decoded once, every sample at `frames.size`² into the task's `GroupWriter` and its windows cut
    from those samples (`WindowsFromPieces`).

    Exactly once, with the frames cache's own protocol (`pipeline/frames/store.py`: shards, then the group's index
    part): an input becomes `ok` only when its last window is committed, so the stage holds each such input's last
    window until the frames commit of its group (`FRAMES_COMMIT_INPUTS` inputs, or the task's last ones) is done,
    then sends it. A kill before the commit leaves the input without
    its last window and without frames: the next run decodes it again (the plan sees no frames index row). A kill
    after it leaves the frames committed and the input pending: the next run's plan marks it `frames_cached` and it is
    decoded for its windows alone. A commit that fails after `retry.*` sends no held window and makes each such
    input's status row pending (io_error): the next run decodes it again. A segment of a long input decodes the
    frames rows it owns (`pipeline.frames.build.segment_rows`) and commits them as a segment part; the segment that
    completes the parts writes the video's index row before sending its held window (`pipeline/frames/store.py`)."""

    def __init__(self, stage: DecodeInputs, opts: dict):
        self.stage, self.opts = stage, opts
        self.layout = OutputLayout(stage.frames.output, opts, stage.layout.retry)
        self.cfg = cache_decode_config(stage.cfg, stage.frames)
        self.group = GroupWriter(self.layout, stage.frames)
        self.held: list[tuple[dict, pa.Table | None, int]] = []  # (row, its held windows, windows sent before)

    def stream(self, row: dict, skip: frozenset, known, segment: WindowRange | None = None):
        """The windows of one input (or of one segment of it: only the rows it decodes, `segment_rows`, found from
        the input's video index row, which the split stage wrote; without one, from the video's start)."""
        src = row["source"]
        choose, first = None, 0
        if segment is not None and known is not None and known.pts_reliable:
            n = len(select_frames(known.pts_ticks, known.end_tick, self.cfg.fps, known.time_base, known.rates)[0])
            rows, _ = segment_rows(n, self.stage.cfg.window_plan(n), segment, self.stage.frames.frames_per_row)
            choose, first = WindowRange(rows.start, rows.stop), rows.start
        pieces = RetriedStream(lambda done: iter_windows(src, self.cfg, storage_options=self.opts, skip_windows=done,
                                                         choose=choose, info=known), frozenset(), self.stage.retry, src)
        return WindowsFromPieces(pieces, self.stage.cfg, skip, self.group, src, segment, first)

    def finish(self, row: dict, stream, held: pa.Table | None, failed: list[dict]):
        """The input's frames end (an index row, or nothing when they failed transiently to the end; a segment: its
        rows, or nothing when it failed: its input's status row says why); every `FRAMES_COMMIT_INPUTS` inputs the
        group is committed and its held windows sent (memory: that many windows)."""
        frames = stream.pieces.outcome
        if stream.segment is not None:
            ok = frames.final and frames.result.status == "ok" and stream.own is not None
            if not ok or self.group.finish_segment(row, stream.own, stream.num_rows) is not None:
                self.group.forget(row["source"])
        elif frames.final:
            self.group.finish(row, frames.result.status, frames.result.message, self.cfg.fps)
        else:
            self.group.forget(row["source"])
        n = held.num_rows if held is not None else 0
        self.held.append((row, held, stream.sent - n))
        if len(self.held) >= FRAMES_COMMIT_INPUTS:
            yield from self.commit(failed)

    def commit(self, failed: list[dict]):
        """Commit the task's frames, then send the held windows; on a commit that failed after `retry.*`, turn the
        inputs' rows in `failed` pending and add a pending row for those whose windows were held."""
        if not self.held:
            return
        try:
            self.group.commit()
            self.group = GroupWriter(self.layout, self.stage.frames)
        except Exception as e:
            if not is_transient_error(e):
                raise
            log.warning("frames cache: the commit of %d inputs' frames failed after retry.* (%s): their last windows "
                        "are not sent, the next run decodes them again", len(self.held), e)
            mine = {r["source"] for r, _, _ in self.held}
            failed[:] = [r for r in failed if r["source"] not in mine]
            for row, held, sent in self.held:
                failed.append({**row, "attempts": 1, "status": IO_ERROR, "message": f"frames cache write: {e}"[:500],
                               "num_windows": int(row["prev_windows"] or 0) + sent, "final": False})
            self.held = []
            self.group = GroupWriter(self.layout, self.stage.frames)
            return
        for _, held, _ in self.held:
            if held is not None:
                yield held
        self.held = []


# -------------------------------------------------------------------------------------------------- tokenizer stage
class TokenizeClips:
    """Callable class for `map_batches`: loads VidTok once per actor, encodes WINDOW_SCHEMA batches.

    `frames` (B, T, H, W, 3) uint8 -> model input (B, 3, T, H, W) float in [-1, 1] (`vidtok.video`). Output tokens:
    (B, t, h, w) int32 FSQ ids, or (B, c, t, h, w) KL latent means as float16 / bfloat16 bytes. A batch holding
    several shapes (decode.buckets, whole-clip pieces) is encoded one shape at a time, so the windows of one bucket
    batch together. `tiling`: v1.1 temporal tiling (`t_chunk_enc=16`, overlap) for whole-clip pieces. Usable
    without Ray (`nodes=None`): the GPU benchmark times it directly.
    """

    def __init__(self, preset: str, checkpoint: str | None, checkpoint_sha256: str, seed: int, precision: str,
                 latent_dtype: str, storage_options: dict | None = None, nodes=None, tiling: bool = False,
                 compile: str | None = None, cudnn_benchmark: bool = True, batch_size: int | None = None):
        import torch

        from vidtok import VidTok, compile_encoder, set_cudnn_benchmark

        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.type == "cpu":
            torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
        if checkpoint:
            model = VidTok.from_pretrained(preset, local_copy(checkpoint, storage_options))
        else:
            torch.manual_seed(seed)  # every actor builds the same random weights
            model = VidTok.from_config(preset)
        if tiling:
            model.use_tiling, model.t_chunk_enc, model.use_overlap = True, TILE_FRAMES, True
        self.model = model.eval().to(self.device)
        if self.device.type == "cuda":
            set_cudnn_benchmark(cudnn_benchmark)  # one window shape per run (per bucket): worth the search
        if compile:
            compile_encoder(self.model, compile)
        self.autocast = self.device.type == "cuda" and precision in ("auto", "bf16")
        self.token_dtype = "int32" if self.model.regularizer_kind == "fsq" else latent_dtype
        self.preset, self.sha, self.nodes = preset, checkpoint_sha256, nodes
        cuda = self.device.type == "cuda"
        # out of memory on a batch: free, halve, retry down to one window; remember what fitted (pipeline/tokenize/oom.py)
        self.batches = AdaptiveBatches(batch_size or 2**31, lambda e: isinstance(e, torch.OutOfMemoryError),
                                       torch.cuda.empty_cache if cuda else (lambda: None))
        if nodes is not None:
            import ray

            if self.device.type == "cpu" and ray.get_gpu_ids():
                log.warning("this actor holds GPU %s but CUDA is not available to torch: encoding on the CPU",
                            ray.get_gpu_ids())
            report_where(nodes, "tokenizer")
            report_where(nodes, "tokenizer_device", self.device.type)
        log.info("TokenizeClips: %s on %s (%s)", preset, self.device, "bf16 autocast" if self.autocast else "fp32")

    def __call__(self, windows: pa.Table) -> pa.Table:
        groups: dict[tuple, list[int]] = {}
        for i, shape in enumerate(zip(*(windows.column(c).to_pylist() for c in ("num_frames", "height", "width")))):
            groups.setdefault(shape, []).append(i)
        if len(groups) == 1:
            return self._encode(windows)
        return pa.concat_tables([self._encode(windows.take(pa.array(rows))) for rows in groups.values()])

    def _encode(self, windows: pa.Table) -> pa.Table:
        """Windows of one shape -> ENCODED rows, in chunks that fit in memory (`self.batches`); a window that does
        not fit even alone becomes a row with `error` = `too_large: ...` (its input's status, settled by the driver)."""
        import torch

        from vidtok.video import to_model_input

        frames = frames_array(windows)

        def encode(start: int, stop: int) -> np.ndarray:
            x = to_model_input(frames[start:stop].copy(), self.device)  # copy: Arrow buffers are read-only
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast):
                enc = self.model.encode(x)
            return self._to_numpy(enc)  # one device->host copy per chunk; device memory freed with `enc`

        parts = []
        for start, stop, tokens in self.batches.run(windows.num_rows, encode):
            rows = windows.slice(start, stop - start)
            if tokens is not None:
                parts.append(encoded_table(rows, tokens, self.token_dtype, self.preset, self.sha))
            else:
                t, h, w = frames.shape[1:4]
                parts.append(failed_table(rows, f"too_large: one window of {t} frames of {h}x{w} pixels does not fit "
                                                f"in {self.device.type} memory even alone (out of memory at batch "
                                                "size 1)", self.token_dtype, self.preset, self.sha))
        return parts[0] if len(parts) == 1 else pa.concat_tables(parts)

    def _to_numpy(self, enc) -> np.ndarray:
        import torch

        if self.token_dtype == "int32":
            return enc.indices.to(torch.int32).cpu().numpy()
        if self.token_dtype == "bfloat16":
            return enc.latents.to(torch.bfloat16).view(torch.int16).cpu().numpy().view(np.uint16)
        return enc.latents.to(torch.float16).cpu().numpy()


# ------------------------------------------------------------------------------------------------------ writer stage
class WriteTokenShard:
    """`map_batches` body (a retryable task): commit the batch's windows as one shard, named by a hash of its keys,
    and return its WRITTEN rows. A retry sees the same batch and writes the same name with the same rows. Rows with
    an `error` (the tokenizer could not encode them) are not written; their WRITTEN rows carry the error."""

    def __init__(self, layout: OutputLayout, tokens_binary: bool):
        self.layout, self.tokens_binary = layout, tokens_binary

    def __call__(self, encoded: pa.Table) -> pa.Table:
        import pyarrow.compute as pc

        ok = encoded.filter(pc.is_null(encoded.column("error")))  # windows the tokenizer could not encode: no tokens
        name = None
        if ok.num_rows:
            table = token_table(ok, self.tokens_binary)
            name = token_shard_name(zip(table.column("source").to_pylist(), table.column("window_index").to_pylist()))
            self.layout.write_table(name, table)
        return written_table(encoded, name)


# ------------------------------------------------------------------------------------------------------- the chain
def plan_dataset(plan_files: list[str], layout: OutputLayout):
    """The plan files (paths on `layout.fs`, as `write_plan` wrote them) as a Dataset: one read task per file, each
    read under `layout`'s retry policy, as every read of the output.

    Not `ray.data.read_parquet`: Ray Data 2.60's Parquet reader lists its files through a pool of 32 footer-reading
    actors per call (`RAY_DATA_PARQUET_FOOTER_NUM_ACTORS`), 32 process starts for the few files a driver wrote itself;
    measured on 2 cores, a run of 3 tiny inputs on a warm local Ray: 5.7 s with it, 3.3 s with one footer actor,
    2.7 s with these read tasks."""
    import ray
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    class PlanFiles(Datasource):
        def estimate_inmemory_data_size(self):
            return None

        def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None):
            return [ReadTask(lambda p=p: [layout.read_table(p)],
                             BlockMetadata(num_rows=None, size_bytes=None, input_files=[p], exec_stats=None))
                    for p in plan_files]

    return ray.data.read_datasource(PlanFiles(), override_num_blocks=max(1, len(plan_files)))


def build_dataset(plan_files: list[str], cfg, decode_cfg: DecodeConfig, layout: OutputLayout, sha: str,
                  tokens_binary: bool, num_gpus: float, shard_rows: int, run_id: str, per_task: int, nodes=None):
    """The whole chain as one lazy Dataset whose rows are WRITTEN rows (consumed by the driver). `per_task`: inputs
    per decode task, as the driver sized them (`TokenizeDecodeTaskConfig.inputs_for`)."""
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.target_max_block_size = cfg.ray.target_block_mb << 20
    dt, tk = cfg.decode_task, cfg.tokenizer
    # streaming split into blocks of `per_task` rows: one decode task each, so decoding spreads over the
    # cluster (a plan file holds thousands of inputs; without this one task would decode them all in turn)
    ds = plan_dataset(plan_files, layout).repartition(target_num_rows_per_block=per_task)
    per_decode = per_task
    # long inputs: one decode task per segment (pipeline/tokenize/segments.py)
    if decode_cfg.segment_s:
        split = SplitLong(decode_cfg, layout.storage_options, VideoIndex.of_job(layout, cfg.index))
        ds = ds.map_batches(split, batch_size=per_task,
                            batch_format="pyarrow", num_cpus=SPLIT_CPUS).repartition(target_num_rows_per_block=1)
        per_decode = 1  # one TASK row: a batch's whole inputs, or one segment
    return (
        ds.map_batches(DecodeInputs(decode_cfg, layout, nodes, cfg.retry, run_id, dt.machine_burst, cfg.index,
                                    cfg.frames),
                       batch_size=per_decode, batch_format="pyarrow",
                       **dt.ray_kwargs(extra_mb=cfg.frames.shard_mb if cfg.frames.output else 0))  # + its shard buffer
        .map_batches(TokenizeClips, batch_size=tk.batch_size, batch_format="pyarrow", num_gpus=num_gpus,
                     num_cpus=tk.num_cpus,
                     compute=ray.data.ActorPoolStrategy(min_size=tk.min_actors, max_size=tk.max_actors),
                     fn_constructor_kwargs={"preset": cfg.preset, "checkpoint": cfg.checkpoint, "checkpoint_sha256": sha,
                                            "seed": cfg.seed, "precision": tk.precision,
                                            "latent_dtype": tk.latent_dtype, "storage_options": layout.storage_options,
                                            "nodes": nodes, "tiling": decode_cfg.whole_clip,
                                            "compile": tk.compile, "cudnn_benchmark": tk.cudnn_benchmark,
                                            "batch_size": tk.batch_size})
        .map_batches(WriteTokenShard(layout, tokens_binary), batch_size=shard_rows, batch_format="pyarrow",
                     num_cpus=0.25)
    )


__all__ = ["DecodeInputs", "RunNodes", "TokenizeClips", "WINDOW_SCHEMA", "WriteTokenShard", "build_dataset"]
