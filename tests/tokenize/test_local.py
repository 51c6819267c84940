"""The tokenize job on a private local Ray: local files, s3 through a real S3 server, broken inputs, resume."""

from __future__ import annotations

import json
import os

import fsspec
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.config import ConfigError, load_config
from pipeline.tokenize.schema import clip_id, decode_tokens
from pipeline.tokenize.run import run_tokenize
from tests.tokenize.helpers import CLIPS, expected_windows, job_config, make_corpus, read_folder, token_rows

LOCAL = fsspec.filesystem("file")


def test_tokenize_local_end_to_end_matches_model_then_nothing_to_do(ray_local, tmp_path):
    """Every window is written once with lineage and the model's exact tokens; a rerun does nothing."""
    make_corpus(tmp_path / "in")
    out = tmp_path / "out"
    cfg = job_config(str(tmp_path / "in"), str(out))
    s = run_tokenize(cfg)
    want = expected_windows()
    assert (s["windows_this_run"], s["inputs_this_run"], s["failures_this_run"]) == (want, 3, {})
    tok = read_folder(LOCAL, str(out / "tokens"))
    st = read_folder(LOCAL, str(out / "status"))
    assert tok.num_rows == want and len(set(tok.column("clip_id").to_pylist())) == want
    assert sorted(st.column("status").to_pylist()) == ["ok"] * 3 and sum(st.column("num_windows").to_pylist()) == want
    shard_rows = [pq.read_metadata(out / "tokens" / f).num_rows for f in os.listdir(out / "tokens")]
    assert max(shard_rows) <= 2 and sum(shard_rows) == want  # shards.shard_rows=2
    row = [r for r in tok.to_pylist() if r["window_index"] == 1][0]
    assert row["clip_id"] == clip_id(row["source"], 1) and row["token_shape"] == [5, 4, 4]
    assert np.allclose(np.diff(row["frame_timestamps"]), 1 / 3, atol=0.05) and row["height"] == row["width"] == 32
    assert row["tokenizer"] == cfg.preset and row["checkpoint_sha256"] == "random-init-seed-0"
    assert row["source_size"] == os.path.getsize(row["source"]) and row["source_mtime"] > 0

    # The tokens are exactly what the model gives for the same decoded window (fp32 on CPU, same seed).
    from pipeline.decode import DecodeConfig, decode_windows
    from vidtok import VidTok

    res = decode_windows(row["source"], DecodeConfig(fps=3.0, size=32, num_frames=17, stride=17))
    frames = torch.from_numpy(res.windows[1].frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    torch.manual_seed(0)
    model = VidTok.from_config(cfg.preset).eval()
    with torch.inference_mode():
        ids = model.encode(frames).indices[0].numpy()
    got = decode_tokens(row["tokens"], row["token_shape"], row["token_dtype"])
    assert (got == ids).mean() == 1.0, f"{(got != ids).sum()} of {ids.size} ids differ"
    assert list(row["frame_indices"]) == res.windows[1].indices.tolist()

    summary = json.loads((out / "summary.json").read_text())
    assert summary["windows_total"] == want and (out / "_SUCCESS").exists()
    assert "preset" in (out / "resolved_config.yaml").read_text()
    # jobs/reconstruct.py's library: the chosen window decoded back, previews written
    from PIL import Image

    from pipeline.tokenize.reconstruct import ReconstructConfig, reconstruct_row, run_reconstruct
    from pipeline.decode.synth import read_frame_number

    rec = run_reconstruct(ReconstructConfig(tokens=str(out), clips=[row["clip_id"]], out_dir=str(tmp_path / "rec")))
    assert rec[0]["frames"] == 17 and Image.open(rec[0]["png"]).size == (17 * 32, 2 * 32)
    import av

    with av.open(rec[0]["mp4"]) as c:
        assert sum(1 for _ in c.decode(video=0)) == 17
    inp, _ = reconstruct_row(model, row)
    assert [read_frame_number(f) for f in inp] == list(row["frame_indices"])  # the preview shows the token's frames

    before = sorted(os.listdir(out / "tokens")) + sorted(os.listdir(out / "status"))
    again = run_tokenize(cfg)
    assert again["nothing_to_do"] is True
    assert sorted(os.listdir(out / "tokens")) + sorted(os.listdir(out / "status")) == before


def test_tokenize_resume_after_simulated_crash_is_exactly_once(ray_local, tmp_path):
    """Losing status rows and some token shards (a crash at any point) and rerunning gives the uninterrupted output."""
    make_corpus(tmp_path / "in")
    full, cut = tmp_path / "full", tmp_path / "cut"
    run_tokenize(job_config(str(tmp_path / "in"), str(full)))
    run_tokenize(job_config(str(tmp_path / "in"), str(cut)))
    # crash states: no status rows at all (driver died before its first flush), one token shard not yet written
    for f in os.listdir(cut / "status"):
        os.remove(cut / "status" / f)
    os.remove(cut / "tokens" / sorted(os.listdir(cut / "tokens"))[0])
    for f in ("_SUCCESS", "summary.json"):
        os.remove(cut / f)
    s = run_tokenize(job_config(str(tmp_path / "in"), str(cut)))
    assert s["windows_this_run"] >= 1 and s["duplicate_windows_found"] == 0
    a, b = read_folder(LOCAL, str(full / "tokens")), read_folder(LOCAL, str(cut / "tokens"))
    assert b.num_rows == a.num_rows == expected_windows()
    assert token_rows(a) == token_rows(b)
    assert read_folder(LOCAL, str(cut / "status")).num_rows == 3


def test_tokenize_s3_in_and_out(ray_local, s3_server, tmp_path):
    """Input listed from s3:// and shards written to s3:// through a real S3 server; credentials never written."""
    fs = s3_server.filesystem()
    bucket = s3_server.make_bucket()
    for p in make_corpus(tmp_path / "in", clips=CLIPS[:2]):
        fs.put(str(p), f"{bucket}/videos/{p.name}")
    cfg = job_config(f"s3://{bucket}/videos", f"s3://{bucket}/tokens", f"storage.endpoint_url={s3_server.endpoint_url}",
                     f"storage.key={s3_server.key}", "storage.secret=SuperSecret123")
    s = run_tokenize(cfg)
    want = expected_windows(CLIPS[:2])
    assert s["windows_this_run"] == want
    tok = read_folder(fs, f"{bucket}/tokens/tokens")
    assert tok.num_rows == want and all(x.startswith(f"s3://{bucket}/videos/") for x in tok.column("source").to_pylist())
    assert all(e for e in tok.column("source_etag").to_pylist())
    resolved = fs.cat(f"{bucket}/tokens/resolved_config.yaml").decode()
    assert "SuperSecret123" not in resolved and "secret: '***'" in resolved and "  batch_size: 4" in resolved
    assert not [f for f in fs.find(f"{bucket}/tokens") if "/_plan/" in f or "/_tmp/" in f]
    assert run_tokenize(cfg)["nothing_to_do"] is True


def test_tokenize_broken_inputs_are_status_rows(ray_local, tmp_path):
    """Good files and every broken kind (via a CSV manifest): all good windows, one status row per broken file."""
    from tests.decode.media import build_broken

    good = make_corpus(tmp_path / "in", clips=CLIPS[:2])
    broken = {b.path: b.reason for b in build_broken(tmp_path / "broken") if not b.kwargs}
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path\n" + "".join(f"{p}\n" for p in [*good, *broken]))
    s = run_tokenize(job_config(str(manifest), str(tmp_path / "out")))
    tok = read_folder(LOCAL, str(tmp_path / "out/tokens"))
    st = read_folder(LOCAL, str(tmp_path / "out/status")).to_pandas().set_index("source")
    assert tok.num_rows == expected_windows(CLIPS[:2])
    assert set(tok.column("source").to_pylist()) == {str(p) for p in good}
    assert len(st) == len(good) + len(broken) and set(broken.values()) >= {"not_a_video", "truncated", "not_found"}
    for path, reason in broken.items():
        assert st.loc[str(path), "status"] == reason, (path, st.loc[str(path), "message"])
        assert st.loc[str(path), "message"] and st.loc[str(path), "num_windows"] == 0
    assert sum(s["failures_this_run"].values()) == len(broken) and s["inputs_ok_this_run"] == len(good)


def test_tokenize_non_square_size_and_its_check(ray_local, tmp_path):
    """`decode.size=[h, w]` tokenizes h x w windows (token shape follows); a size off the spatial factor fails fast
    naming the key and a valid size."""
    make_corpus(tmp_path / "in", clips=CLIPS[:1], size=(96, 64))
    s = run_tokenize(job_config(str(tmp_path / "in"), str(tmp_path / "out"), "decode.size=[32,48]"))
    assert s["size"] == [32, 48] and s["token_shape"] == [5, 4, 6]
    t = read_folder(LOCAL, str(tmp_path / "out/tokens"))
    assert set(zip(t.column("height").to_pylist(), t.column("width").to_pylist())) == {(32, 48)}
    with pytest.raises(ConfigError, match=r"decode.size: \[32, 44\].*spatial factor 8.*\[32, 40\]"):
        run_tokenize(job_config(str(tmp_path / "in"), str(tmp_path / "out2"), "decode.size=[32,44]"))


def test_tokenize_buckets_by_aspect_ratio(ray_local, tmp_path):
    """With decode.buckets each input goes to the bucket nearest its aspect ratio; the bucket is a column, the
    token shape follows it, and mixed buckets in one tokenizer batch are encoded bucket by bucket."""
    make_corpus(tmp_path / "in" / "wide", clips=CLIPS[:1], size=(128, 64))  # 2:1 -> [32, 64]
    make_corpus(tmp_path / "in" / "tall", clips=CLIPS[:1], size=(64, 128))  # 1:2 -> [64, 32]
    s = run_tokenize(job_config(str(tmp_path / "in"), str(tmp_path / "out"),
                                "decode.buckets=[[32,32],[32,64],[64,32]]", "tokenizer.batch_size=8"))
    assert s["failures_this_run"] == {} and s["buckets"] == [[32, 32], [32, 64], [64, 32]]
    t = read_folder(LOCAL, str(tmp_path / "out/tokens")).to_pylist()
    got = {os.path.basename(os.path.dirname(r["source"])): (r["bucket"], r["height"], r["width"], tuple(r["token_shape"]))
           for r in t}
    assert got == {"wide": ("32x64", 32, 64, (5, 4, 8)), "tall": ("64x32", 64, 32, (5, 8, 4))}


def test_tokenize_whole_clip_pieces_and_reconstruct(ray_local, tmp_path):
    """decode.whole_clip=true with a v1.1 preset: one row per piece of at most max_frames samples (the last one
    shorter), each with its own token shape; the rows cover every sample once and reconstruct; v1.0 is refused."""
    from pipeline.tokenize.reconstruct import ReconstructConfig, run_reconstruct

    make_corpus(tmp_path / "in", clips=[(12.0, 25.0)])  # 36 samples at 3 FPS -> pieces of 16, 16, 4
    preset = "vidtok_fsq_causal_488_32768_v1_1_tiny"
    s = run_tokenize(job_config(str(tmp_path / "in"), str(tmp_path / "out"), f"preset={preset}",
                                "decode.whole_clip=true", "decode.max_frames=16"))
    rows = sorted(read_folder(LOCAL, str(tmp_path / "out/tokens")).to_pylist(), key=lambda r: r["window_index"])
    assert [r["num_frames"] for r in rows] == [16, 16, 4] and s["windows_this_run"] == 3
    assert [tuple(r["token_shape"]) for r in rows] == [(5, 4, 4), (5, 4, 4), (2, 4, 4)]  # tiled: 1 + ceil((T-1)/4)
    assert sum((r["frame_indices"] for r in rows), []) == sorted(set(sum((r["frame_indices"] for r in rows), [])))
    out = run_reconstruct(load_config(ReconstructConfig, None, [f"tokens={tmp_path / 'out'}", "num_clips=3",
                                                                 f"out_dir={tmp_path / 'rec'}"]))
    assert sorted(r["frames"] for r in out) == [4, 16, 16]
    with pytest.raises(ConfigError, match="whole_clip=true needs a causal v1.1 preset"):
        run_tokenize(job_config(str(tmp_path / "in"), str(tmp_path / "out2"), "decode.whole_clip=true"))
