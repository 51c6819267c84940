"""The tokenize job fetches each remote input's bytes once: GET bytes served per input, counted by a proxy."""

from __future__ import annotations

from pipeline.tokenize.run import run_tokenize
from tests.faults import FaultProxy
from tests.tokenize.helpers import CLIPS, expected_windows, job_config, make_corpus


def test_tokenize_reads_each_input_once(ray_local, s3_server, tmp_path):
    """Listing, probing, decoding and committing a run from s3:// fetch at most 1.05x each input's size (it was 4x:
    the existence check, the header check, the probe's demux and the decoder each fetched the object)."""
    fs = s3_server.filesystem()
    bucket = s3_server.make_bucket()
    sizes = {}
    for p in make_corpus(tmp_path / "in", clips=CLIPS[:2], size=(160, 120)):
        fs.put(str(p), f"{bucket}/videos/{p.name}")
        sizes[f"/{bucket}/videos/{p.name}"] = p.stat().st_size
    with FaultProxy(s3_server.endpoint_url) as proxy:
        cfg = job_config(f"s3://{bucket}/videos", f"s3://{bucket}/tokens", f"storage.endpoint_url={proxy.endpoint_url}",
                         f"storage.key={s3_server.key}", f"storage.secret={s3_server.secret}",
                         "decode.read_block_bytes=16384")
        assert run_tokenize(cfg)["windows_this_run"] == expected_windows(CLIPS[:2])
        ratios = {k: proxy.served[k] / n for k, n in sizes.items()}
    assert all(r <= 1.05 for r in ratios.values()), ratios


def test_dry_run_takes_current_index_rows_instead_of_probing(tmp_path):
    """With `_index/` rows for two of three inputs (one of them for an older version of its file), the dry run
    takes one input from the index, probes the other two, and estimates what it estimates without an index."""
    from pipeline.decode.index import VideoIndex
    from pipeline.decode.probe import probe
    from pipeline.inputs import iter_inputs
    from pipeline.storage import OutputLayout
    from pipeline.tokenize.dry_run import dry_run

    make_corpus(tmp_path / "in")
    out = tmp_path / "out"
    cfg = job_config(str(tmp_path / "in"), str(out), "dry_run=true")
    plain = dry_run(cfg)
    rows = [r for t in iter_inputs(str(tmp_path / "in"), extensions=cfg.extensions) for r in t.to_pylist()]
    assert len(rows) == 3 and plain.from_index == 0
    stale = {**rows[1], "source_size": rows[1]["source_size"] + 1}  # the object has changed since it was indexed
    index = VideoIndex(OutputLayout(str(out)))
    for r in (rows[0], stale):
        index.keep(r, probe(r["source"]))
    r = dry_run(cfg)
    assert (r.probed, r.from_index) == (3, 1) and "1 of them from the video index" in r.estimate_basis
    assert (r.expected_windows, r.expected_video_hours) == (plain.expected_windows, plain.expected_video_hours)
