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
