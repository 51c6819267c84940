"""Hand-run benchmark: VidTok encode / decode time and peak memory per clip, against a baseline commit in the same run.

    .venv/bin/python benchmarks/model_speed.py [PRESET] [--frames 17] [--size 256] [--runs 3] [--threads 2]
        [--baseline-rev 29f4343] [--out result.json]

The baseline is the `vidtok/` package of `--baseline-rev` (default: 29f4343, the commit before the speed
work of docs/benchmarks.md), extracted with `git archive` into a temporary folder (the repository is only read). Every measurement runs in
its own fresh subprocess that imports either that copy or this checkout's `vidtok`, so peak RSS
(`resource.getrusage(...).ru_maxrss`: weights, input and the phase itself) is per phase and per implementation.
Rounds interleave baseline and new (enc-base, enc-new, dec-base, dec-new, ...) so a change of machine load hits
both alike. Both load the same random weights (one state dict drawn with `--seed`, saved once), encode the same clip
and decode the same latents (the baseline's). Reported: median seconds (wall) and median process CPU seconds over
`--runs` rounds, median peak RSS, and new/baseline ratios for each; FSQ ids must be identical and the maximum
absolute difference of latents and decoded video is printed. CPU: float32 under `torch.inference_mode`. CUDA
(`--device cuda`): bf16 autocast, peak memory = `torch.cuda.max_memory_allocated`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def extract_baseline(rev: str, dest: Path) -> Path:
    """`vidtok/` of commit `rev` under dest/<rev>/ (read-only use of the repository)."""
    root = dest / rev
    if not (root / "vidtok" / "__init__.py").exists():
        root.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "vidtok"], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True)
    return root


def worker(args) -> None:
    """One phase of one implementation in this fresh process; prints a JSON line."""
    import torch

    import vidtok
    from vidtok import VidTok

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = VidTok.from_config(args.preset).eval()
    model.load_official_state_dict(torch.load(args.weights, weights_only=True))
    model = model.to(device)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else torch.autocast("cpu", enabled=False))
    data = torch.load(args.input, weights_only=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    with torch.inference_mode(), autocast:
        x = data.to(device)
        t0, c0 = time.perf_counter(), time.process_time()
        if args.phase == "encode":
            enc = model.encode(x)
            out = {"latents": enc.latents.float().cpu(), "z": enc.z.float().cpu()}
            if enc.indices is not None:
                out["indices"] = enc.indices.cpu()
        else:
            out = {"video": model.decode(x).float().cpu()}  # .cpu() synchronises on CUDA
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    torch.save(out, args.output)
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "peak_bytes": peak, "vidtok": vidtok.__file__}))


def run_worker(impl_root: Path, phase: str, inp: Path, out: Path, args, weights: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(impl_root))
    cmd = [sys.executable, str(Path(__file__).resolve()), args.preset, "--worker", "--phase", phase,
           "--input", str(inp), "--output", str(out), "--weights", str(weights), "--threads", str(args.threads),
           "--device", args.device]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{phase} worker for {impl_root} failed:\n{res.stderr[-3000:]}")
    rec = json.loads(res.stdout.strip().splitlines()[-1])
    if not rec["vidtok"].startswith(str(impl_root)):
        raise RuntimeError(f"worker imported {rec['vidtok']}, expected a vidtok under {impl_root}")
    return rec


def _loadavg() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("preset", nargs="?", default="vidtok_fsq_causal_488_32768")
    ap.add_argument("--frames", type=int, default=None, help="default: 17 causal, 16 non-causal")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3, help="rounds; each round runs every phase of both once")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--baseline-rev", default="29f4343")
    ap.add_argument("--phases", default="encode,decode")
    ap.add_argument("--out", default=None, help="also write the figures as JSON here")
    # worker mode (internal)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    ap.add_argument("--output", help=argparse.SUPPRESS)
    ap.add_argument("--weights", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args)
        return 0

    import torch

    sys.path.insert(0, str(REPO))
    from vidtok import VidTok

    tmp = Path(tempfile.mkdtemp(prefix="vt-speed-"))
    base_root = extract_baseline(args.baseline_rev, Path(tempfile.gettempdir()) / "vidtok-baseline")
    impls = {"baseline": base_root, "new": REPO}
    torch.manual_seed(args.seed)
    model = VidTok.from_config(args.preset)
    T = args.frames or model.default_num_frames
    weights, clip = tmp / "weights.pt", tmp / "clip.pt"
    torch.save(model.official_state_dict(), weights)
    x = torch.rand(1, 3, T, args.size, args.size, generator=torch.Generator().manual_seed(args.seed)) * 2 - 1
    torch.save(x, clip)
    n_params = sum(p.numel() for p in model.parameters())
    del model
    phases = args.phases.split(",")
    print(f"preset {args.preset} ({n_params / 1e6:.2f} M params), clip 1x3x{T}x{args.size}x{args.size}, "
          f"{args.device} {'fp32' if args.device == 'cpu' else 'bf16 autocast'}, threads {args.threads}, "
          f"{args.runs} rounds, baseline {args.baseline_rev} vs {REPO}; load average {_loadavg()}", flush=True)

    recs: dict[tuple[str, str], list[dict]] = {(i, p): [] for i in impls for p in phases}
    outs = {(i, p): tmp / f"{p}_{i}.pt" for i in impls for p in phases}
    latents_file = tmp / "latents.pt"
    for r in range(args.runs):
        for phase in phases:
            for name, root in impls.items():
                if phase == "decode" and not latents_file.exists():  # the baseline's latents, decoded by both
                    src = outs.get(("baseline", "encode"))
                    if src is None or not src.exists():
                        src = tmp / "enc_for_decode.pt"
                        run_worker(base_root, "encode", clip, src, args, weights)
                    torch.save(torch.load(src, weights_only=True)["latents"], latents_file)
                inp = clip if phase == "encode" else latents_file
                rec = run_worker(root, phase, inp, outs[(name, phase)], args, weights)
                recs[(name, phase)].append(rec)
                print(f"  round {r + 1} {phase:6s} {name:8s} {rec['wall_s']:8.2f} s wall {rec['cpu_s']:8.2f} s cpu "
                      f"{rec['peak_bytes'] / 2**30:6.2f} GiB  (load {_loadavg()})", flush=True)

    result: dict = {"preset": args.preset, "clip": [1, 3, T, args.size, args.size], "threads": args.threads,
                    "runs": args.runs, "baseline_rev": args.baseline_rev, "device": args.device, "phases": {}}
    mem_label = "peak CUDA allocated" if args.device == "cuda" else "peak RSS"
    for phase in phases:
        med = {name: {k: statistics.median(rec[k] for rec in recs[(name, phase)])
                      for k in ("wall_s", "cpu_s", "peak_bytes")} for name in impls}
        ratio = {k: med["new"][k] / med["baseline"][k] for k in ("wall_s", "cpu_s", "peak_bytes")}
        result["phases"][phase] = {"median": med, "ratio_new_over_baseline": ratio,
                                   "runs": {n: recs[(n, phase)] for n in impls}}
        b, n = med["baseline"], med["new"]
        print(f"{phase}: baseline {b['wall_s']:.2f} s ({b['cpu_s']:.1f} cpu-s), {mem_label} "
              f"{b['peak_bytes'] / 2**30:.2f} GiB | new {n['wall_s']:.2f} s ({n['cpu_s']:.1f} cpu-s), "
              f"{n['peak_bytes'] / 2**30:.2f} GiB")
        print(f"{phase} ratios new/baseline (medians of {args.runs}): time {ratio['wall_s']:.3f}, "
              f"cpu time {ratio['cpu_s']:.3f}, {mem_label} {ratio['peak_bytes']:.3f}")
    if "encode" in phases:
        eb = torch.load(outs[("baseline", "encode")], weights_only=True)
        en = torch.load(outs[("new", "encode")], weights_only=True)
        if "indices" in eb:
            same = bool(torch.equal(eb["indices"], en["indices"]))
            result["fsq_ids_identical"] = same
            print(f"FSQ ids identical: {same} ({(eb['indices'] != en['indices']).sum().item()} of "
                  f"{eb['indices'].numel()} differ)")
        result["z_max_abs_diff"] = (eb["z"] - en["z"]).abs().max().item()
        print(f"raw latent z: max abs diff {result['z_max_abs_diff']:.3e}")
    if "decode" in phases:
        vb = torch.load(outs[("baseline", "decode")], weights_only=True)["video"]
        vn = torch.load(outs[("new", "decode")], weights_only=True)["video"]
        result["video_max_abs_diff"] = (vb - vn).abs().max().item()
        print(f"decoded video {tuple(vb.shape)}: max abs diff {result['video_max_abs_diff']:.3e} "
              f"(values up to {vb.abs().max().item():.2f})")
    print(f"load average at the end {_loadavg()}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0 if result.get("fsq_ids_identical", True) else 1


if __name__ == "__main__":
    sys.exit(main())
