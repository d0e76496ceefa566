"""FSDP vs DDP vs one process on the CPU: the same run three ways, side by side.

    .venv/bin/python benchmarks/bench_fsdp.py                 # 2 gloo processes, 4-layer char model
    .venv/bin/python benchmarks/bench_fsdp.py --steps 20 --emb_dim 384

Runs `gpt2 train`'s Trainer (build_trainer + fit) on the built-in Shakespeare corpus with a
char tokenizer: once in one process, then under torchrun with 2 processes and
--system.parallel ddp, then fsdp. Reports, per configuration: the train losses (max
difference to one process), the final weights (max difference), the bytes each process
keeps for parameters + gradients + AdamW state (the local pieces of DTensors under FSDP;
expect about 1/N of DDP's), its peak RSS, and the steady-state ms per step.

benchmarks/gpu_check.sh runs the worker alone on GPUs (`--worker --device cuda --preset
gpt2-xl --steps_only ...`), which prints what each process holds and its peak GPU memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

BENCH = Path(__file__).resolve()


def tensor_bytes(t: torch.Tensor | None) -> int:
    """Bytes this process holds for `t` (its local piece, for a DTensor)."""
    if t is None:
        return 0
    from torch.distributed.tensor import DTensor

    t = t.to_local() if isinstance(t, DTensor) else t
    return t.numel() * t.element_size()


def steps_only(trainer: object, steps: int) -> dict[str, float]:
    """On the GPU: optimizer steps alone (no evaluation, no checkpoint of a 1.5B model to disk);
    the mean time of the steps after the first two."""
    import time

    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss, _ = trainer.train_step(1e-4)
        loss.item()  # waits for the device
        times.append(time.perf_counter() - start)
    return {"ms_per_step": 1000 * sum(times[2:]) / max(1, len(times) - 2)}


def worker(args: argparse.Namespace) -> None:
    """One process of a run (under torchrun for 2): train, then write what it holds."""
    from gpt2.training.config import (
        DataSection,
        EvalSection,
        ModelSection,
        OptimSection,
        RunConfig,
        SystemSection,
        TrainSection,
    )
    from gpt2.training.distributed import process_group
    from gpt2.training.launch import build_trainer

    shape = ({"n_layers": args.n_layers, "emb_dim": args.emb_dim, "n_heads": 4, "context_length": 128}
             if args.preset == "char-tiny" else {})  # a GPT-2 preset keeps its own shape
    cfg = RunConfig(
        model=ModelSection(preset=args.preset, drop_rate=0.0, **shape),
        data=DataSection(dir=args.data), optim=OptimSection(name="adamw", lr=1e-3, warmup_steps=2),
        train=TrainSection(max_steps=args.steps, batch_size=args.batch, seed=7, out_dir=args.out,
                           log_interval=1, max_passes=0),
        eval=EvalSection(interval=0, batches=1, sample_tokens=0, final_full=False),
        system=SystemSection(device=args.device, dtype=args.dtype, threads=1 if args.device == "cpu" else 0,
                             progress=False, parallel=args.parallel,
                             activation_checkpointing=args.activation_checkpointing))
    trainer = build_trainer(cfg)
    with process_group(trainer.info):
        summary = steps_only(trainer, args.steps) if args.steps_only else trainer.fit()
        opt_state = sum(tensor_bytes(v) for s in trainer.optimizer.state.values() for v in s.values()
                        if isinstance(v, torch.Tensor) and v.dim() > 0)
        params = list(trainer.raw_model.parameters())
        held = {"params": sum(map(tensor_bytes, params)), "grads": sum(tensor_bytes(p.grad) for p in params),
                "optimizer": opt_state, "ms_per_step": summary.get("ms_per_step"),
                "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "gpu_peak_gb": torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else None}
    print(json.dumps({"rank": trainer.info.rank, **held}))
    Path(args.out).mkdir(parents=True, exist_ok=True)  # steps_only writes no checkpoint
    (Path(args.out) / f"held_rank{trainer.info.rank}.json").write_text(json.dumps(held))


def launch(name: str, args: argparse.Namespace, data: Path, out: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    own = ["--worker", "--data", str(data), "--out", str(out), "--steps", str(args.steps),
           "--n_layers", str(args.n_layers), "--emb_dim", str(args.emb_dim)]
    if name == "1 process":
        cmd = [sys.executable, str(BENCH), *own]
    else:
        torchrun = Path(sys.executable).with_name("torchrun")
        cmd = [str(torchrun), "--standalone", "--nproc_per_node=2", str(BENCH), *own, "--parallel", name[-4:]]
    subprocess.run(cmd, check=True, env=env, capture_output=True)


def prepare_data(folder: Path) -> Path:
    from gpt2.data.prepare import PrepareOptions, prepare

    prepare(["shakespeare"], folder, "char", options=PrepareOptions(progress=False, workers=1))
    return folder


def compare(runs: dict[str, Path]) -> None:
    from gpt2 import GPT2

    def losses(out: Path) -> list[float]:
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        return [r["train_loss"] for r in rows if "train_loss" in r]

    base = runs["1 process"]
    ref_losses, ref = losses(base), GPT2.from_pretrained(base / "latest")
    print(f"\n{'run':16} {'max |dloss|':>12} {'max |dw|':>10} {'params+grads+AdamW / process':>30} "
          f"{'RSS / process':>14} {'ms/step':>8}")
    for name, out in runs.items():
        dloss = max(abs(a - b) for a, b in zip(losses(out), ref_losses, strict=True))
        model = GPT2.from_pretrained(out / "latest")
        pairs = zip(model.parameters(), ref.parameters(), strict=True)
        dw = max((p - q).abs().max().item() for p, q in pairs)
        held = [json.loads(p.read_text()) for p in sorted(out.glob("held_rank*.json"))]
        mb = [(h["params"] + h["grads"] + h["optimizer"]) / 1e6 for h in held]
        parts = ", ".join(f"{h['params'] / 1e6:.2f}+{h['grads'] / 1e6:.2f}+{h['optimizer'] / 1e6:.2f}"
                          for h in held)
        rss = " / ".join(f"{h['rss_mb']:.0f}" for h in held)
        print(f"{name:16} {dloss:12.2e} {dw:10.2e} {' / '.join(f'{m:.2f} MB' for m in mb):>17} ({parts}) "
              f"{rss:>10} MB {held[0]['ms_per_step'] or 0:8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--n_layers", type=int, default=4)
    parser.add_argument("--emb_dim", type=int, default=256)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--parallel", default="ddp", help=argparse.SUPPRESS)
    # for the GPU check (benchmarks/gpu_check.sh runs one worker per GPU under torchrun)
    parser.add_argument("--preset", default="char-tiny", help="char-tiny (shaped by the above) or gpt2-*")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--activation_checkpointing", action="store_true")
    parser.add_argument("--steps_only", action="store_true", help="optimizer steps only (no eval, no save)")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    from gpt2.runtime.hardware import describe

    print(f"machine: {describe()}, python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}; "
          f"model: {args.n_layers} layers x {args.emb_dim}, char vocabulary, context 128, batch 8, "
          f"{args.steps} steps, float32, gloo")
    with tempfile.TemporaryDirectory() as tmp:
        data = prepare_data(Path(tmp) / "data")
        runs = {name: Path(tmp) / name.replace(" ", "-") for name in ("1 process", "2 x ddp", "2 x fsdp")}
        for name, out in runs.items():
            launch(name, args, data, out)
        compare(runs)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
