"""Tokens back to pixels: decode chosen windows of a token output and save what the tokens hold.

For each chosen clip: the input window is decoded again from its source (the frames named by `frame_indices`, same
fps and size), the tokens are decoded by the same VidTok preset, and two files are written:
  <clip_id>.mp4   input | reconstruction side by side, at the sample rate (3 FPS)
  <clip_id>.png   a grid: input frames on the top row, reconstructed frames below
Tokens made with random weights (`checkpoint_sha256 = random-init-seed-<n>`) are decoded with the same random weights;
tokens made from a checkpoint need that checkpoint (its sha256 is checked).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from pipeline.config import StorageConfig
from pipeline.decode import sample_frames
from pipeline.decode.previews import grid_png, side_by_side_mp4
from pipeline.storage import OutputLayout, join, local_copy, sha256_of, write_bytes
from pipeline.tokenize.schema import decode_tokens

log = logging.getLogger(__name__)


@dataclass
class ReconstructConfig:
    """`jobs/reconstruct.py` settings."""

    tokens: str = "out/tokens_demo"  # the tokenize job's output (folder or prefix with tokens/)
    clips: list[str] = field(default_factory=list)  # clip ids; empty = the first `num_clips` rows
    num_clips: int = 2  # how many rows to reconstruct when `clips` is empty
    checkpoint: Optional[str] = None  # the weights the tokens were made with (sha256 checked); null for random weights
    out_dir: str = "out/reconstruct"  # where <clip_id>.mp4 / .png go (local folder or object-store prefix)
    storage: StorageConfig = field(default_factory=StorageConfig)

    def __post_init__(self):
        if self.num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, found {self.num_clips}")


def select_rows(cfg: ReconstructConfig) -> list[dict]:
    """Rows of the chosen clips (reads shards one at a time and stops once it has them)."""
    import pyarrow.parquet as pq  # (lazy imports here: `jobs/reconstruct.py --help` loads this module)

    layout = OutputLayout(cfg.tokens, cfg.storage.storage_options())
    files = layout.list("tokens")
    if not files:
        raise FileNotFoundError(f"no token shards under {cfg.tokens}/tokens: run jobs/tokenize_corpus.py first")
    want, rows = set(cfg.clips), []
    for f in files:
        with layout.fs.open(f, "rb") as fh:
            for r in pq.read_table(fh).to_pylist():
                if (r["clip_id"] in want) if want else len(rows) < cfg.num_clips:
                    rows.append(r)
        if (want and len(rows) == len(want)) or (not want and len(rows) >= cfg.num_clips):
            break
    missing = want - {r["clip_id"] for r in rows}
    if missing:
        raise KeyError(f"clip ids not found in {cfg.tokens}: {sorted(missing)}")
    return rows


def load_model(row: dict, checkpoint: Optional[str], storage_options: dict | None = None):
    import torch

    from vidtok import VidTok

    sha = row["checkpoint_sha256"]
    if sha.startswith("random-init-seed-"):
        log.warning("these tokens were made with RANDOM weights (%s): the reconstruction shows the pipeline, not "
                    "VidTok's quality", sha)
        torch.manual_seed(int(sha.rsplit("-", 1)[1]))
        return VidTok.from_config(row["tokenizer"]).eval()
    if not checkpoint:
        raise ValueError(f"tokens were made with checkpoint sha256 {sha[:12]}...: pass checkpoint=<that .ckpt>")
    got = sha256_of(checkpoint, storage_options)
    if got != sha:
        raise ValueError(f"checkpoint {checkpoint} has sha256 {got[:12]}..., the tokens were made with {sha[:12]}...")
    return VidTok.from_pretrained(row["tokenizer"], local_copy(checkpoint, storage_options))


def reconstruct_row(model, row: dict, storage_options: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(input, reconstruction): both (T, H, W, 3) uint8 for one token row."""
    import torch

    from vidtok.video import to_uint8_frames

    s = sample_frames(row["source"], fps=row["sample_fps"], size=(row["height"], row["width"]),
                      storage_options=storage_options)
    pos = {int(i): k for k, i in enumerate(s.indices)}
    frames = np.stack([s.frames[pos[int(i)]] for i in row["frame_indices"]])
    tok = decode_tokens(row["tokens"], row["token_shape"], row["token_dtype"])
    if model.is_v1_1 and row["num_frames"] != model.default_num_frames:  # a whole-clip piece: chunked, as encoded
        model.use_tiling, model.t_chunk_enc, model.use_overlap = True, 16, True
    with torch.inference_mode():
        if row["token_dtype"] == "int32":
            video = model.decode_indices(torch.from_numpy(tok)[None].long())
        else:
            video = model.decode(torch.from_numpy(tok.astype(np.float32))[None])
    rec = to_uint8_frames(video[0, :, -frames.shape[0]:])
    return frames, rec


def save_previews(frames: np.ndarray, rec: np.ndarray, fps: float, stem: str,
                  storage_options: dict | None = None) -> tuple[str, str]:
    """Write `<stem>.mp4` (side by side) and `<stem>.png` (input row over reconstruction row); local or remote."""
    mp4 = write_bytes(stem + ".mp4", side_by_side_mp4(frames, rec, fps), storage_options)
    png = write_bytes(stem + ".png", grid_png(frames, rec), storage_options)
    return mp4, png


def run_reconstruct(cfg: ReconstructConfig) -> list[dict]:
    """Reconstruct the chosen clips; returns one record per clip (paths and the mean absolute pixel error)."""
    opts = cfg.storage.storage_options()
    rows = select_rows(cfg)
    model = load_model(rows[0], cfg.checkpoint, opts)
    results = []
    for row in rows:
        frames, rec = reconstruct_row(model, row, opts)
        mp4, png = save_previews(frames, rec, row["sample_fps"], join(cfg.out_dir, row["clip_id"]), opts)
        mae = float(np.abs(frames.astype(np.float32) - rec.astype(np.float32)).mean())
        results.append({"clip_id": row["clip_id"], "source": row["source"], "mp4": str(mp4), "png": str(png),
                        "frames": int(len(rec)), "mean_abs_error": round(mae, 2)})
        log.info("%s: %s, %s (mean |input - reconstruction| = %.1f / 255)", row["clip_id"], mp4, png, mae)
    return results
