"""Driver side of the tokenize job: plan, run the Ray Data chain, commit status rows, write the summary.

Exactly-once protocol (details and failure analysis in docs/tokenize.md):
  1. resume state = keys of committed token shards + sources of committed status rows (pipeline.commit);
  2. plan = inputs without a status row, each with the windows already committed (`skip_windows`);
  3. the chain commits token shards atomically and streams back one metadata row per window / per failed input;
  4. this driver counts committed windows per input and, once an input is complete, buffers its status row; buffers
     are committed as status shards every `shards.status_every_inputs` inputs / `shards.status_every_s` seconds;
  5. when every planned input has a status row: summary.json, resolved_config.yaml and _SUCCESS.
A kill -9 anywhere loses at most uncommitted work; the next run's plan redoes exactly that.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import Counter

import numpy as np

from pipeline.commit import OutputLayout, load_resume_state, status_shard_name, write_json, write_plan
from pipeline.config import ConfigError, to_yaml
from pipeline.listing import iter_inputs
from pipeline.schema import status_table
from pipeline.tokenize_config import TokenizeJobConfig

log = logging.getLogger(__name__)


class StatusTracker:
    """Turns the writer's metadata stream into committed status rows and run statistics."""

    def __init__(self, layout: OutputLayout, every_inputs: int, every_s: float):
        self.layout, self.every_inputs, self.every_s = layout, every_inputs, every_s
        self.inflight: dict[str, set[int]] = {}
        self.buffer: list[dict] = []
        self.last_flush = time.time()
        self.finished = 0
        self.windows = 0
        self.video_s = 0.0
        self.reasons: Counter = Counter()
        self.nodes: dict[str, set] = {"decode": set(), "tokenizer": set(), "tokenizer_device": set()}

    def consume(self, meta: dict) -> None:
        n = len(meta["source"])
        for k, key in (("decode_node", "decode"), ("tokenize_node", "tokenizer"), ("tokenize_device", "tokenizer_device")):
            self.nodes[key].update(str(v) for v in meta[k])
        for i in range(n):
            row = {k: (v[i].item() if hasattr(v[i], "item") else v[i]) for k, v in meta.items()}
            s, w = row["source"], int(row["window_index"])
            if w < 0:
                self.finish(row, int(row["prev_windows"]))
                continue
            got = self.inflight.setdefault(s, set())
            if w not in got:
                got.add(w)
                self.windows += 1
            if int(row["prev_windows"]) + len(got) >= int(row["num_windows"]):
                self.finish(row, int(row["num_windows"]))
        self.maybe_flush()

    def finish(self, row: dict, num_windows: int) -> None:
        self.inflight.pop(row["source"], None)
        nan_to_none = lambda v: None if v is None or v != v else v  # noqa: E731
        self.buffer.append({"source": row["source"], "source_size": nan_to_none(row.get("source_size")),
                            "source_etag": row.get("source_etag") or None,
                            "source_mtime": nan_to_none(row.get("source_mtime")),
                            "status": row.get("status", "ok"), "message": row.get("message", ""),
                            "num_windows": num_windows, "source_fps": nan_to_none(row.get("source_fps")),
                            "source_duration_s": nan_to_none(row.get("source_duration_s")),
                            "decode_backend": row.get("decode_backend") or None})
        self.finished += 1
        self.reasons[row.get("status", "ok")] += 1
        self.video_s += nan_to_none(row.get("source_duration_s")) or 0.0

    def maybe_flush(self, force: bool = False) -> None:
        due = len(self.buffer) >= self.every_inputs or time.time() - self.last_flush >= self.every_s
        if self.buffer and (force or due):
            self.layout.write_table(status_shard_name([r["source"] for r in self.buffer]), status_table(self.buffer))
            log.info("committed status rows for %d inputs (%d finished so far)", len(self.buffer), self.finished)
            self.buffer = []
            self.last_flush = time.time()


def _check_identity(layout: OutputLayout, cfg: TokenizeJobConfig) -> None:
    """An output holds tokens of one configuration; a rerun with other settings must pick another output."""
    mine = cfg.identity()
    found = layout.read_text("_job.json")
    if found is None:
        write_json(layout, "_job.json", mine)
        return
    theirs = json.loads(found)
    diff = {k: (theirs.get(k), v) for k, v in mine.items() if theirs.get(k) != v}
    if diff:
        raise ConfigError(f"output {cfg.output} holds tokens made with other settings {diff} (was, now): "
                          "use a new output=..., or the same settings to resume")


def _token_info(cfg: TokenizeJobConfig) -> tuple[str, int, tuple, bool]:
    """(regularizer kind, frames per window, token shape, tokens_binary) without building the full-width model."""
    from vidtok import VidTok

    probe = VidTok.from_config(cfg.preset, ch=8)  # same structure, 8 channels: cheap on the driver
    T = cfg.decode.num_frames or probe.default_num_frames
    t, h, w = probe.latent_shape(T, cfg.decode.size, cfg.decode.size)
    kind = probe.regularizer_kind
    shape = (t, h, w) if kind == "fsq" else (probe.config.z_channels, t, h, w)
    return kind, T, shape, kind != "fsq"


def _checkpoint_sha(cfg: TokenizeJobConfig) -> str:
    if not cfg.checkpoint:
        log.warning("!" * 100)
        log.warning("!!! NO CHECKPOINT: tokenizing with RANDOM WEIGHTS (preset %s, seed %d). These tokens are only a "
                    "pipeline demo. Pass checkpoint=/path/<preset>.ckpt for real tokens (see README).", cfg.preset, cfg.seed)
        log.warning("!" * 100)
        return f"random-init-seed-{cfg.seed}"
    import hashlib

    from pipeline.listing import url_to_fs

    fs, path = url_to_fs(cfg.checkpoint, cfg.storage.storage_options())
    h = hashlib.sha256()
    with fs.open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def run_tokenize(cfg: TokenizeJobConfig) -> dict:
    """Run (or resume) the job described by `cfg`; returns the summary (also written as summary.json)."""
    from pipeline.decode import DecodeConfig
    from pipeline.ray_utils import init_ray

    t0 = time.time()
    opts = cfg.storage.storage_options()
    source = cfg.input
    if not source:
        from pipeline.sample_corpus import make_sample_corpus

        s = cfg.sample
        source = str(make_sample_corpus(s.dir, s.num_clips, s.seconds, s.fps, s.width, s.height))
        log.info("no input= given: using the generated sample corpus %s", source)
    layout = OutputLayout(cfg.output, opts)
    _check_identity(layout, cfg)
    kind, T, token_shape, tokens_binary = _token_info(cfg)
    sha = _checkpoint_sha(cfg)
    decode_cfg = DecodeConfig(fps=cfg.decode.fps, size=cfg.decode.size, num_frames=T, stride=cfg.decode.stride or T,
                              tail=cfg.decode.tail, timeout_s=cfg.decode.timeout_s, max_pixels=cfg.decode.max_pixels,
                              max_duration_s=cfg.decode.max_duration_s, backend=cfg.decode.backend)
    state = load_resume_state(layout)
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    chunks = iter_inputs(source, extensions=cfg.extensions, storage_options=opts, column=cfg.manifest_column,
                         data_dir=cfg.data_dir)
    plan = write_plan(layout, chunks, state, run_id, limit=cfg.limit)
    log.info("plan: %d inputs listed, %d already done, %d to decode, %d complete without decoding (%.1f s)",
             plan.total_inputs, plan.skipped_done, plan.pending, len(plan.complete_without_decode), time.time() - t0)
    if plan.pending == 0 and not plan.complete_without_decode and layout.exists("_SUCCESS"):
        log.info("nothing to do: all %d inputs of %s already have status rows in %s", plan.skipped_done, source,
                 cfg.output)
        layout.remove(f"_plan/{run_id}", recursive=True)
        return {**json.loads(layout.read_text("summary.json") or "{}"), "nothing_to_do": True}

    layout.remove("_SUCCESS")  # work is pending: readers must not take the output as complete until it is done
    layout.write_bytes("resolved_config.yaml", to_yaml(cfg).encode())
    tracker = StatusTracker(layout, cfg.shards.status_every_inputs, cfg.shards.status_every_s)
    for row in plan.complete_without_decode:
        tracker.finish({**row, "status": "ok", "message": ""}, row["num_windows"])
    t_run = time.time()
    if plan.pending:
        started = init_ray(cfg.ray.address, num_cpus=cfg.ray.num_cpus,
                           object_store_memory=cfg.ray.object_store_mb << 20)
        try:
            import ray

            num_gpus = cfg.tokenizer.num_gpus
            if num_gpus < 0:
                num_gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
            row_bytes = int(np.prod(token_shape)) * (2 if tokens_binary else 4) + 64 * T
            shard_rows = max(1, min(cfg.shards.shard_rows, int(cfg.shards.shard_max_mb * 2**20 // row_bytes)))
            from pipeline.tokenize import build_dataset

            ds = build_dataset(plan.files, cfg, decode_cfg, layout, sha, tokens_binary, num_gpus, shard_rows)
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                tracker.consume(batch)
        finally:
            tracker.maybe_flush(force=True)  # what is committed stays committed, even if the chain failed
            if started:
                import ray

                ray.shutdown()
    tracker.maybe_flush(force=True)
    wall = time.time() - t0
    expected = plan.pending + len(plan.complete_without_decode)
    if tracker.finished != expected or tracker.inflight:
        raise RuntimeError(f"{expected} inputs planned but {tracker.finished} finished ({len(tracker.inflight)} with "
                           "missing windows); nothing is lost: rerun the same command to complete them")
    layout.remove("_plan", recursive=True)  # this run's plan; an older crashed run's plan is stale too
    done_reasons = Counter(state.failures)
    done_reasons.update({k: v for k, v in tracker.reasons.items() if k != "ok"})
    run_s = max(time.time() - t_run, 1e-9)
    summary = {
        "output": cfg.output, "input": source, "run_id": run_id, "complete": True, "nothing_to_do": False,
        "tokenizer": cfg.preset, "checkpoint_sha256": sha, "random_weights": not cfg.checkpoint,
        "regularizer": kind, "token_shape": list(token_shape), "num_frames": T, "size": cfg.decode.size,
        "inputs_listed": plan.total_inputs, "inputs_done_before": plan.skipped_done,
        "inputs_this_run": tracker.finished, "inputs_ok_this_run": tracker.reasons.get("ok", 0),
        "failures_this_run": {k: v for k, v in sorted(tracker.reasons.items()) if k != "ok"},
        "failures_total": dict(sorted(done_reasons.items())), "duplicate_inputs_in_listing": plan.duplicates_in_input,
        "windows_this_run": tracker.windows, "windows_total": state.committed_windows + tracker.windows,
        "duplicate_windows_found": state.duplicate_windows, "wall_time_s": round(wall, 3),
        "pipeline_time_s": round(run_s, 3), "windows_per_s": round(tracker.windows / run_s, 3),
        "video_seconds_per_s": round(tracker.video_s / run_s, 3), "nodes": {k: sorted(v) for k, v in tracker.nodes.items()},
    }
    write_json(layout, "summary.json", summary)
    layout.write_bytes("resolved_config.yaml", to_yaml(cfg).encode())
    layout.write_bytes("_SUCCESS", b"")
    return summary
