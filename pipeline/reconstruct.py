"""Tokens back to pixels: decode chosen windows of a token output and save what the tokens hold.

For each chosen clip: the input window is decoded again from its source (the frames named by `frame_indices`, same
fps and size), the tokens are decoded by the same VidTok preset, and two files are written:
  <clip_id>.mp4   input | reconstruction side by side, at the sample rate (3 FPS)
  <clip_id>.png   a grid: input frames on the top row, reconstructed frames below
Tokens made with random weights (`checkpoint_sha256 = random-init-seed-<n>`) are decoded with the same random weights;
tokens made from a checkpoint need that checkpoint (its sha256 is checked).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from pipeline.tokenize_config import StorageSection

log = logging.getLogger(__name__)


@dataclass
class ReconstructConfig:
    tokens: str = "out/tokens_demo"  # the tokenize job's output (folder with tokens/)
    clips: list[str] = field(default_factory=list)  # clip ids; empty = the first `num_clips` rows
    num_clips: int = 2
    checkpoint: Optional[str] = None  # required when the tokens came from a checkpoint
    out_dir: str = "out/reconstruct"
    storage: StorageSection = field(default_factory=StorageSection)

    def __post_init__(self):
        if self.num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, found {self.num_clips}")


def select_rows(cfg: ReconstructConfig) -> list[dict]:
    """Rows of the chosen clips (reads shards one at a time and stops once it has them)."""
    import pyarrow.parquet as pq

    from pipeline.commit import OutputLayout

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


def load_model(row: dict, checkpoint: Optional[str]):
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
    got = hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()
    if got != sha:
        raise ValueError(f"checkpoint {checkpoint} has sha256 {got[:12]}..., the tokens were made with {sha[:12]}...")
    return VidTok.from_pretrained(row["tokenizer"], checkpoint)


def reconstruct_row(model, row: dict, storage_options: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(input, reconstruction): both (T, H, W, 3) uint8 for one token row."""
    import torch

    from pipeline.decode import sample_frames
    from pipeline.schema import decode_tokens

    s = sample_frames(row["source"], fps=row["sample_fps"], size=(row["height"], row["width"]),
                      storage_options=storage_options)
    pos = {int(i): k for k, i in enumerate(s.indices)}
    frames = np.stack([s.frames[pos[int(i)]] for i in row["frame_indices"]])
    tok = decode_tokens(row["tokens"], row["token_shape"], row["token_dtype"])
    with torch.inference_mode():
        if row["token_dtype"] == "int32":
            video = model.decode_indices(torch.from_numpy(tok)[None].long())
        else:
            video = model.decode(torch.from_numpy(tok.astype(np.float32))[None])
    rec = video[0, :, -frames.shape[0]:].clamp(-1, 1).add(1).mul(127.5).round().byte().permute(1, 2, 3, 0).numpy()
    return frames, rec


def save_previews(frames: np.ndarray, rec: np.ndarray, fps: float, stem: Path) -> tuple[Path, Path]:
    """Write stem.mp4 (side by side) and stem.png (input row over reconstruction row)."""
    from fractions import Fraction

    import av
    from PIL import Image

    n = min(len(frames), len(rec))
    side = np.concatenate([frames[:n], rec[:n]], axis=2)
    h, w = side.shape[1] // 2 * 2, side.shape[2] // 2 * 2  # yuv420p needs even sizes
    mp4 = stem.with_suffix(".mp4")
    with av.open(str(mp4), "w") as out:
        st = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        for f in side[:, :h, :w]:
            for p in st.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                out.mux(p)
        for p in st.encode(None):
            out.mux(p)
    grid = np.concatenate([np.concatenate(list(frames[:n]), axis=1), np.concatenate(list(rec[:n]), axis=1)], axis=0)
    png = stem.with_suffix(".png")
    Image.fromarray(grid).save(png)
    return mp4, png


def run_reconstruct(cfg: ReconstructConfig) -> list[dict]:
    """Reconstruct the chosen clips; returns one record per clip (paths and the mean absolute pixel error)."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = select_rows(cfg)
    model = load_model(rows[0], cfg.checkpoint)
    results = []
    for row in rows:
        frames, rec = reconstruct_row(model, row, cfg.storage.storage_options())
        mp4, png = save_previews(frames, rec, row["sample_fps"], out / row["clip_id"])
        mae = float(np.abs(frames.astype(np.float32) - rec.astype(np.float32)).mean())
        results.append({"clip_id": row["clip_id"], "source": row["source"], "mp4": str(mp4), "png": str(png),
                        "frames": int(len(rec)), "mean_abs_error": round(mae, 2)})
        log.info("%s: %s, %s (mean |input - reconstruction| = %.1f / 255)", row["clip_id"], mp4, png, mae)
    return results
