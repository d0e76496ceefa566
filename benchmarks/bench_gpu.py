"""The Python parts of benchmarks/gpu_check.sh, one subcommand each, each printing a compact table.

    python benchmarks/bench_gpu.py parity            # logits of ours vs transformers on the device
    python benchmarks/bench_gpu.py train-summary RUN # steady state of a `gpt2 train` run (metrics.jsonl)
    python benchmarks/bench_gpu.py hf-train          # transformers' training step at the same shape
    python benchmarks/bench_gpu.py decode            # greedy decoding tokens/s: ours vs transformers

Environment: GPU_CHECK_DEVICE (default cuda if available), GPU_CHECK_TINY=1 for a seconds-long
run with a 2-layer model (to smoke-test this script on a CPU). Weights are random (nothing is
downloaded): parity and speed do not depend on what the weights learned.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from gpt2 import GPT2, GPT2Config
from gpt2.generation import SamplingOptions
from gpt2.generation.decode import generate
from gpt2.training.mfu import flops_per_token, peak_flops

TINY = os.environ.get("GPT2_CHECK_TINY", os.environ.get("GPU_CHECK_TINY", "")) == "1"
DEVICE = torch.device(os.environ.get("GPU_CHECK_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu"))


def model_config() -> GPT2Config:
    """GPT-2 small (124M), or a 2-layer model of the same vocabulary with GPU_CHECK_TINY=1."""
    if TINY:
        return GPT2Config.from_preset("gpt2", n_layers=2, emb_dim=64, n_heads=2, context_length=128)
    return GPT2Config.from_preset("gpt2")


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def hf_model(model: GPT2) -> torch.nn.Module:
    """transformers' GPT2LMHeadModel with `model`'s weights (through our checkpoint format)."""
    from transformers import GPT2LMHeadModel

    folder = Path(tempfile.mkdtemp()) / "ckpt"
    model.save_pretrained(folder)
    return GPT2LMHeadModel.from_pretrained(folder).to(DEVICE).eval()


def parity() -> None:
    torch.manual_seed(0)
    ours = GPT2(model_config()).eval()
    theirs = hf_model(ours)
    ours.to(DEVICE)
    idx = torch.randint(0, ours.cfg.vocab_size, (2, min(256, ours.cfg.context_length)), device=DEVICE)
    with torch.no_grad():
        a, b = ours(idx), theirs(input_ids=idx).logits
    diff = (a - b).abs().max().item()
    print(f"{'parity (fp32 logits)':28} {str(DEVICE):8} max |ours - transformers| = {diff:.2e}  "
          f"{'OK' if diff < 1e-3 else 'MISMATCH'}")


def train_summary(run: Path) -> None:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steady = [r for r in rows if "steady_tokens_per_s" in r]
    losses = [(r["step"], r["train_loss"]) for r in rows if "train_loss" in r]
    if not steady:
        print(f"{'gpt2 train':28} no steady-state row in {run}/metrics.jsonl (run too short?)")
        return
    s = steady[-1]
    mfu = f"{s['steady_mfu']:.1%}" if "steady_mfu" in s else "n/a"
    ms, tokens_s = s["steady_ms_per_step"], s["steady_tokens_per_s"]
    print(f"{'gpt2 train (ours)':28} {ms:9.1f} ms/step {tokens_s:12,.0f} tok/s "
          f"MFU {mfu:>6}   loss {losses[0][1]:.3f} (step {losses[0][0]}) -> {losses[-1][1]:.3f} "
          f"(step {losses[-1][0]})")


def hf_train(batch: int, seq: int, steps: int, compile_model: bool) -> None:
    """transformers' GPT2LMHeadModel: bf16 autocast, SDPA, fused AdamW, its own loss."""
    from transformers import GPT2Config as HFConfig
    from transformers import GPT2LMHeadModel

    cfg = model_config()
    seq = min(seq, cfg.context_length)
    hf_cfg = HFConfig(vocab_size=cfg.vocab_size, n_positions=cfg.context_length, n_embd=cfg.emb_dim,
                      n_layer=cfg.n_layers, n_head=cfg.n_heads, resid_pdrop=0.0, embd_pdrop=0.0,
                      attn_pdrop=0.0)
    hf = GPT2LMHeadModel(hf_cfg).to(DEVICE).train()  # SDPA attention: transformers' default
    opt = torch.optim.AdamW(hf.parameters(), lr=1e-4, fused=DEVICE.type == "cuda")
    fwd = torch.compile(hf) if compile_model else hf
    x = torch.randint(0, cfg.vocab_size, (batch, seq), device=DEVICE)
    dtype = torch.bfloat16 if DEVICE.type == "cuda" else torch.float32
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(DEVICE.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = fwd(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        sync()
        times.append(time.perf_counter() - t)
    step_s = statistics.median(times[3:] or times)
    tokens_s = batch * seq / step_s
    peak = peak_flops(DEVICE, dtype)
    mfu = f"{tokens_s * flops_per_token(cfg, seq) / peak:.1%}" if peak else "n/a"
    label = f"transformers train{' compiled' if compile_model else ''}"
    print(f"{label:28} {step_s * 1e3:9.1f} ms/step {tokens_s:12,.0f} tok/s MFU {mfu:>6}   (B{batch} x {seq}, "
          f"{str(dtype).removeprefix('torch.')})")


def decode(batches: list[int], new_tokens: int, dtype_name: str) -> None:
    dtype = {"float32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    torch.manual_seed(0)
    ours = GPT2(model_config()).eval()
    theirs = hf_model(ours).to(dtype)
    ours.to(DEVICE, dtype)
    greedy = SamplingOptions(temperature=0)
    for batch in batches:
        idx = torch.randint(0, ours.cfg.vocab_size, (batch, 16), device=DEVICE)
        results = {}
        for name, run in {
            "ours cuda-graph/auto": lambda i=idx: generate(ours, i, new_tokens, greedy),
            "ours dynamic cache": lambda i=idx: generate(ours, i, new_tokens, greedy, decoder="dynamic"),
            "transformers": lambda i=idx: theirs.generate(i, max_new_tokens=new_tokens,
                                                          min_new_tokens=new_tokens, do_sample=False,
                                                          pad_token_id=0),
        }.items():
            with torch.no_grad():
                run()  # warm-up (and capture)
                sync()
                t = time.perf_counter()
                out = run()
                sync()
            results[name] = out
            rate = batch * new_tokens / (time.perf_counter() - t)
            print(f"decode B{batch:<3} {name:20} {rate:12,.0f} tok/s  ({new_tokens} new, {dtype_name})")
        same = torch.equal(results["ours cuda-graph/auto"], results["ours dynamic cache"])
        print(f"decode B{batch:<3} graph == dynamic tokens: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("parity")
    summary = sub.add_parser("train-summary")
    summary.add_argument("run", type=Path)
    train = sub.add_parser("hf-train")
    train.add_argument("--batch", type=int, default=4 if TINY else 16)
    train.add_argument("--seq", type=int, default=1024)
    train.add_argument("--steps", type=int, default=5 if TINY else 15)
    train.add_argument("--compile", action="store_true")
    dec = sub.add_parser("decode")
    dec.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    dec.add_argument("--new_tokens", type=int, default=16 if TINY else 200)
    dec.add_argument("--dtype", default="float32", choices=["float32", "bf16"])
    args = parser.parse_args()
    if args.command == "parity":
        parity()
    elif args.command == "train-summary":
        train_summary(args.run)
    elif args.command == "hf-train":
        hf_train(args.batch, args.seq, args.steps, args.compile)
    else:
        decode(args.batches, args.new_tokens, args.dtype)


if __name__ == "__main__":
    main()
