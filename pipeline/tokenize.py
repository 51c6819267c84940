"""The Ray Data chain of the tokenize job: plan files -> decode windows (CPU) -> VidTok encoder (GPU actors) -> shards.

    read_parquet(plan).repartition     pending inputs, `decode.inputs_per_task` per block (streaming split)
      .map_batches(decode_inputs)      CPU tasks: one input -> many 17x256x256 windows (pipeline.decode), one row each;
                                       an input that yields no window (failure, or all already committed) -> one
                                       status-only row (window_index = -1)
      .map_batches(TokenizeClips)      actor pool (min/max from config), num_gpus per actor, model loaded once per
                                       actor; bf16 autocast on CUDA, fp32 on CPU; tokens leave the GPU at once
      .map_batches(write_token_shard)  batch = one shard: commit it atomically, return small metadata rows
    driver: iterates the metadata stream and commits status rows (pipeline/tokenize_run.py)

Memory stays bounded whatever the corpus size: decoded windows (3.3 MB each at 17x256x256x3) travel in blocks of
`ray.target_block_mb`, decode tasks take `decode.inputs_per_task` inputs each, and Ray Data's streaming executor
backpressures the decode stage when the object store fills. Frames never reach the driver.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Iterator

import numpy as np

from pipeline.commit import OutputLayout, token_shard_name
from pipeline.schema import token_table

log = logging.getLogger(__name__)

# Columns carried from decode to the driver (everything except pixels and tokens).
META_COLUMNS = ("source", "source_size", "source_etag", "source_mtime", "source_fps", "source_duration_s",
                "decode_backend", "status", "message", "window_index", "num_windows", "prev_windows",
                "decode_node", "tokenize_node", "tokenize_device")


# ----------------------------------------------------------------------------------------------------- decode stage
def _fill_source_info(row: dict, storage_options: dict) -> None:
    """Manifests may not carry size/etag: ask the store once per input (cheap next to decoding it)."""
    if row.get("source_size") is not None and row["source_size"] == row["source_size"]:
        return
    try:
        from pipeline.listing import url_to_fs

        fs, path = url_to_fs(row["source"], storage_options)
        info = fs.info(path)
        row["source_size"] = info.get("size")
        etag = info.get("ETag") or info.get("etag")
        row["source_etag"] = etag.strip('"') if isinstance(etag, str) else None
        mtime = info.get("mtime") or info.get("LastModified")
        row["source_mtime"] = mtime.timestamp() if hasattr(mtime, "timestamp") else (float(mtime) if mtime else None)
    except Exception:  # the decode below reports the io_error with its message
        pass


def decode_inputs(batch: dict, *, decode_cfg, storage_options: dict) -> Iterator[dict]:
    """Plan rows -> window rows. `frames` (n, T, H, W, 3) uint8; timestamps (n, T) float64; indices (n, T) int64.

    Never raises for a bad input: `decode_windows` classifies it and the input becomes a status-only row whose
    frames are zeros (the column keeps one fixed tensor shape so blocks concatenate; such rows are never encoded).
    """
    import ray

    from pipeline.decode import decode_windows

    node = ray.get_runtime_context().get_node_id()
    T, H, W = decode_cfg.num_frames, _hw(decode_cfg.size)[0], _hw(decode_cfg.size)[1]
    n = len(batch["source"])
    for i in range(n):
        row = {k: (batch[k][i].item() if hasattr(batch[k][i], "item") else batch[k][i]) for k in
               ("source", "source_size", "source_etag", "source_mtime", "prev_windows")}
        skip = frozenset(int(w) for w in batch["skip_windows"][i])
        _fill_source_info(row, storage_options)
        res = decode_windows(row["source"], decode_cfg, storage_options=storage_options, skip_windows=skip)
        base = {**row, "source_fps": float(res.source_fps or np.nan), "source_duration_s": float(res.duration_s or np.nan),
                "decode_backend": res.backend or "", "status": res.status, "message": res.message or "",
                "num_windows": int(res.num_windows_total or 0) if res.status == "ok" else 0, "decode_node": node,
                "sample_fps": float(decode_cfg.fps)}
        windows = [w for w in res.windows if w.index not in skip] if res.status == "ok" else []
        if not windows:
            yield _rows([base], [-1], np.zeros((1, T, H, W, 3), np.uint8), np.zeros((1, T)), np.zeros((1, T), np.int64))
            continue
        for start in range(0, len(windows), 4):  # a few windows per yield: Ray cuts blocks at target_max_block_size
            chunk = windows[start:start + 4]
            yield _rows([base] * len(chunk), [w.index for w in chunk], np.stack([w.frames for w in chunk]),
                        np.stack([w.timestamps for w in chunk]).astype(np.float64),
                        np.stack([w.indices for w in chunk]).astype(np.int64))


def _hw(size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _rows(bases: list[dict], widx: list[int], frames, ts, idx) -> dict:
    out = {k: np.array([b[k] for b in bases], dtype=object if isinstance(bases[0][k], str) or bases[0][k] is None
                       else None) for k in bases[0]}
    for k in ("source_size", "source_mtime"):
        out[k] = np.array([np.nan if b[k] is None else b[k] for b in bases], dtype=np.float64)
    out["source_etag"] = np.array([b["source_etag"] or "" for b in bases], dtype=object)
    out.update(window_index=np.asarray(widx, np.int32), frames=frames, frame_timestamps=ts, frame_indices=idx)
    return out


# -------------------------------------------------------------------------------------------------- tokenizer stage
class TokenizeClips:
    """Callable class for `map_batches`: loads VidTok once per actor, encodes window batches.

    Input `frames` (B, T, H, W, 3) uint8 -> model input (B, 3, T, H, W) float in [-1, 1]. Output `tokens`
    (B, t, h, w) int32 FSQ ids, or (B, c, t, h, w) KL latent means as float16 / bfloat16 bit patterns (uint16);
    `frames` is dropped so pixels never travel past this stage.
    """

    def __init__(self, preset: str, checkpoint: str | None, checkpoint_sha256: str, seed: int, precision: str,
                 latent_dtype: str, storage_options: dict | None = None):
        import ray
        import torch

        from vidtok import VidTok

        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.type == "cpu" and ray.get_gpu_ids():
            log.warning("this actor holds GPU %s but CUDA is not available to torch: encoding on the CPU",
                        ray.get_gpu_ids())
        if self.device.type == "cpu":
            torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
        if checkpoint:
            model = VidTok.from_pretrained(preset, _local_copy(checkpoint, storage_options))
        else:
            torch.manual_seed(seed)  # every actor builds the same random weights
            model = VidTok.from_config(preset)
        self.model = model.eval().to(self.device)
        self.autocast = self.device.type == "cuda" and precision in ("auto", "bf16")
        self.latent_dtype = latent_dtype
        self.preset, self.sha = preset, checkpoint_sha256
        self.node = ray.get_runtime_context().get_node_id()
        log.info("TokenizeClips: %s on %s (%s)", preset, self.device, "bf16 autocast" if self.autocast else "fp32")

    def __call__(self, batch: dict) -> dict:
        import torch

        frames = batch.pop("frames")
        ok = np.asarray(batch["window_index"]) >= 0
        n = len(ok)
        tokens = None
        if ok.any():
            x = torch.from_numpy(np.ascontiguousarray(frames[ok]))
            if self.device.type == "cuda":
                x = x.pin_memory().to(self.device, non_blocking=True)
            x = x.permute(0, 4, 1, 2, 3).float().div_(127.5).sub_(1.0)  # (B,T,H,W,3) uint8 -> (B,3,T,H,W) [-1,1]
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast):
                enc = self.model.encode(x)
            tokens = self._to_numpy(enc)  # one device->host copy per batch, GPU memory freed with `enc`
            del x, enc
        shape = tokens.shape[1:] if tokens is not None else self._shape(frames.shape)
        dtype = "int32" if self.model.regularizer_kind == "fsq" else self.latent_dtype
        full = np.zeros((n, *shape), dtype=tokens.dtype if tokens is not None else self._np_dtype(dtype))
        if tokens is not None:
            full[ok] = tokens
        batch.update(tokens=full, token_shape=np.tile(np.asarray(shape, np.int32), (n, 1)),
                     token_dtype=np.array([dtype] * n, dtype=object), tokenizer=np.array([self.preset] * n, dtype=object),
                     checkpoint_sha256=np.array([self.sha] * n, dtype=object),
                     num_frames=np.full(n, frames.shape[1], np.int32), height=np.full(n, frames.shape[2], np.int32),
                     width=np.full(n, frames.shape[3], np.int32), tokenize_node=np.array([self.node] * n, dtype=object),
                     tokenize_device=np.array([self.device.type] * n, dtype=object))
        return batch

    def _to_numpy(self, enc) -> np.ndarray:
        import torch

        if self.model.regularizer_kind == "fsq":
            return enc.indices.to(torch.int32).cpu().numpy()
        if self.latent_dtype == "bfloat16":
            return enc.latents.to(torch.bfloat16).view(torch.int16).cpu().numpy().view(np.uint16)
        return enc.latents.to(torch.float16).cpu().numpy()

    def _shape(self, frames_shape) -> tuple:
        _, T, H, W, _ = frames_shape
        t, h, w = self.model.latent_shape(T, H, W)
        return (t, h, w) if self.model.regularizer_kind == "fsq" else (self.model.config.z_channels, t, h, w)

    @staticmethod
    def _np_dtype(dtype: str):
        return {"int32": np.int32, "float16": np.float16, "bfloat16": np.uint16}[dtype]


def _local_copy(url: str, storage_options: dict | None) -> str:
    """Checkpoints on object storage are copied once per actor to a local temp file (torch.load needs a path)."""
    if "://" not in url or url.startswith("file://"):
        return url.removeprefix("file://")
    from pipeline.listing import url_to_fs

    fs, path = url_to_fs(url, storage_options)
    dst = os.path.join(tempfile.mkdtemp(prefix="vidtok-ckpt-"), os.path.basename(path))
    fs.get(path, dst)
    return dst


# ------------------------------------------------------------------------------------------------------ writer stage
def write_token_shard(batch: dict, *, layout: OutputLayout, tokens_binary: bool) -> dict:
    """Commit the batch's windows as one shard (name = hash of its keys) and return its metadata rows.

    Runs as a retryable Ray task: a retry sees the same batch, writes the same name with the same rows.
    """
    ok = np.asarray(batch["window_index"]) >= 0
    meta = {k: batch[k] for k in META_COLUMNS}
    shard = np.array([""] * len(ok), dtype=object)
    if ok.any():
        rows = {k: v[ok] for k, v in batch.items() if k not in ("decode_node", "tokenize_node", "tokenize_device")}
        for k in ("source_size", "source_mtime"):
            rows[k] = [None if v != v else v for v in rows[k]]
        rows["source_etag"] = [v or None for v in rows["source_etag"]]
        table = token_table(rows, tokens_binary=tokens_binary)
        name = token_shard_name(zip(table.column("source").to_pylist(), table.column("window_index").to_pylist()))
        layout.write_table(name, table)
        shard[ok] = name
    meta["shard"] = shard
    return meta


# ------------------------------------------------------------------------------------------------------- the chain
def build_dataset(plan_files: list[str], cfg, decode_cfg, layout: OutputLayout, sha: str,
                  tokens_binary: bool, num_gpus: float, shard_rows: int):
    """The whole chain as one lazy Dataset whose rows are the writer's metadata (consumed by the driver)."""
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.target_max_block_size = cfg.ray.target_block_mb << 20
    opts = cfg.storage.storage_options()
    tk = cfg.tokenizer
    return (
        ray.data.read_parquet(plan_files, filesystem=_arrow_fs(layout))
        # streaming split into blocks of `inputs_per_task` rows: one decode task each, so decoding spreads over the
        # cluster (a plan file holds thousands of inputs; without this one task would decode them all in turn)
        .repartition(target_num_rows_per_block=cfg.decode.inputs_per_task)
        .map_batches(decode_inputs, batch_size=cfg.decode.inputs_per_task, num_cpus=cfg.decode.num_cpus,
                     memory=cfg.decode.memory_mb * 2**20,
                     fn_kwargs={"decode_cfg": decode_cfg, "storage_options": opts})
        .map_batches(TokenizeClips, batch_size=tk.batch_size, num_gpus=num_gpus, num_cpus=tk.num_cpus,
                     compute=ray.data.ActorPoolStrategy(min_size=tk.min_actors, max_size=tk.max_actors),
                     fn_constructor_kwargs={"preset": cfg.preset, "checkpoint": cfg.checkpoint, "checkpoint_sha256": sha,
                                            "seed": cfg.seed, "precision": tk.precision,
                                            "latent_dtype": tk.latent_dtype, "storage_options": opts})
        .map_batches(write_token_shard, batch_size=shard_rows, num_cpus=0.25,
                     fn_kwargs={"layout": layout, "tokens_binary": tokens_binary})
    )


def _arrow_fs(layout: OutputLayout):
    """pyarrow filesystem for Ray's reader, built from the same fsspec filesystem (same endpoint and credentials)."""
    import pyarrow.fs as pafs

    return None if layout.local else pafs.PyFileSystem(pafs.FSSpecHandler(layout.fs))
