"""The optimiser and learning-rate schedule of GPT-2-style training.

AdamW (Loshchilov & Hutter, 2019) with weight decay only on the matrices that mix
features (Linear and embedding weights); biases and LayerNorm gains are left alone,
because shrinking them toward zero has no regularising meaning. The learning rate rises
linearly for `warmup_steps`, then follows a half cosine down to `min_lr`.
"""

from __future__ import annotations

import inspect
import math

import torch
from torch import nn

from gpt2.errors import GPT2Error
from gpt2.training.muon import Muon, muon_groups


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Split trainable parameters into a decayed group (tensors with >= 2 dims: weights of
    Linear and Embedding) and an undecayed one (biases, LayerNorm gains).

    `named_parameters` yields a tied tensor once, so the shared embedding / LM-head weight
    appears in exactly one group. The order is the model's own, so optimizer state saved
    by one run lines up with the parameters of the next.
    """
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def fused_supported(device: torch.device) -> bool:
    """Whether this torch has a fused AdamW kernel for parameters on `device`."""
    if "fused" not in inspect.signature(torch.optim.AdamW).parameters:
        return False
    return device.type in ("cuda", "cpu", "mps", "xpu")


def build_optimizer(model: nn.Module, lr: float, weight_decay: float = 0.1,
                    betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8,
                    impl: str = "auto", name: str = "adamw", muon_lr: float = 0.02,
                    momentum: float = 0.95, ns_dtype: torch.dtype = torch.float32) -> torch.optim.Optimizer:
    """AdamW over `param_groups`, or (name 'muon') `Muon` with AdamW for the parameters
    Muon does not take. impl (AdamW only): 'fused' (one kernel for all parameters),
    'foreach' (batched ops, the portable fast path), 'loop' (torch's one-parameter-at-a-time
    kernel) or 'auto' (fused where supported, else foreach). `adamw_reference_step` is the
    same update written out; tests check every kernel against it. ns_dtype: see `Muon`."""
    if name == "muon":
        return Muon(muon_groups(model, weight_decay, lr, muon_lr), lr, momentum, betas, eps, ns_dtype)
    if name != "adamw":
        raise GPT2Error(f"optim.name must be adamw or muon, got {name!r}")
    device = next(model.parameters()).device
    if impl == "auto":
        impl = "fused" if fused_supported(device) else "foreach"
    if impl not in ("fused", "foreach", "loop"):
        raise GPT2Error(f"optim.impl must be auto, fused, foreach or loop, got {impl!r}")
    kwargs = {"fused": True} if impl == "fused" else {"foreach": impl == "foreach"}
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas, eps=eps, **kwargs)


@torch.no_grad()
def adamw_reference_step(groups: list[dict], state: dict[int, dict], lr: float,
                         betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8) -> None:
    """One AdamW step, written out, for the parameters of `groups` (as `param_groups` makes
    them, each with its weight_decay). `state` keeps each parameter's moments between calls.

        p <- p * (1 - lr * weight_decay)          decoupled weight decay (the "W" in AdamW)
        m <- beta1 * m + (1 - beta1) * g          running mean of the gradient
        v <- beta2 * v + (1 - beta2) * g^2        running mean of its square
        p <- p - lr * m_hat / (sqrt(v_hat) + eps)  m_hat, v_hat: m, v corrected for starting at 0
    """
    beta1, beta2 = betas
    for group in groups:
        for p in group["params"]:
            if p.grad is None:
                continue
            s = state.setdefault(id(p), {"t": 0, "m": torch.zeros_like(p), "v": torch.zeros_like(p)})
            s["t"] += 1
            p.mul_(1 - lr * group["weight_decay"])
            s["m"].mul_(beta1).add_(p.grad, alpha=1 - beta1)
            s["v"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            m_hat = s["m"] / (1 - beta1 ** s["t"])
            v_hat = s["v"] / (1 - beta2 ** s["t"])
            p.sub_(lr * m_hat / (v_hat.sqrt() + eps))


def lr_at(step: int, lr: float, warmup_steps: int, max_steps: int, min_lr: float) -> float:
    """Learning rate for optimizer step `step` (0-based) of a `max_steps`-step run.

    Linear warmup from lr/warmup_steps to lr over the first `warmup_steps` steps, then
    cosine decay from lr, reaching min_lr at step `max_steps`: the last step trained
    (max_steps - 1) still runs slightly above min_lr. Constant min_lr from max_steps on.
    """
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return min_lr
    decay_steps = max(1, max_steps - warmup_steps)
    progress = (step - warmup_steps) / decay_steps  # 0 -> 1
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)


def set_lr(optimizer: torch.optim.Optimizer, lr: float, muon_lr: float | None = None) -> None:
    """Apply the schedule's learning rate to every parameter group; Muon's groups (see
    `Muon`) take `muon_lr`, their own rate at this step (default: lr)."""
    for group in optimizer.param_groups:
        group["lr"] = muon_lr if group.get("muon") and muon_lr is not None else lr
