"""Muon: momentum orthogonalised by Newton-Schulz, for the hidden weight matrices.

Muon (Jordan et al., 2024, "Muon: An optimizer for hidden layers in neural networks")
takes SGD's momentum for a weight matrix W (out, in) and replaces it by the nearest
semi-orthogonal matrix U V^T (from the SVD U S V^T of the momentum) before stepping:
every direction of the update gets the same size, so rare directions are not drowned
by the few large ones. It reaches a given loss in fewer tokens than AdamW on small GPTs,
which is what a few-minute CPU run needs.

Only the 2-D matrices inside the transformer blocks use Muon. Embeddings, the tied output
head, biases and LayerNorm gains keep AdamW, as in the paper, stepped by torch's fused AdamW
kernel (`optim.adamw_reference_step` is the same update written out, and the tests hold
them together). `Muon` is one `torch.optim.Optimizer` holding both kinds of groups (a
group's `muon` key says which), so checkpoints and resume treat it like AdamW;
`optim.set_lr` gives the Muon groups their own scheduled rate.

Why not `torch.optim.Muon` (torch >= 2.9): it orthogonalises one matrix at a time, always in
bf16. Here the matrices of one shape go through Newton-Schulz as one batch, in the precision
the run computes in (bf16 only where the CPU has it natively; emulated bf16 is 5-40x slower):
at equal precision ours measured ~1.2x faster on the demo's and tiny Shakespeare's models
(benchmarks/RESULTS.md, "Optimizer step").
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.optim.adamw import adamw

# Coefficients of the quintic Newton-Schulz iteration from the paper: chosen so 5 steps push
# every singular value of a normalised matrix into roughly [0.7, 1.2], which is enough.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5


def orthogonalize(g: Tensor, steps: int = NS_STEPS) -> Tensor:
    """Approximately U V^T for g = U S V^T, by Newton-Schulz iteration. g: (rows, cols), or
    (n, rows, cols) for n matrices of one shape at once (fewer, larger matrix products).

    Each step maps X -> a X + b (X X^T) X + c (X X^T)^2 X, an odd polynomial of X that
    moves every singular value toward 1 and leaves the singular vectors alone. X starts as g
    divided by its Frobenius norm, so all singular values start at most 1.
    """
    a, b, c = NS_COEFFICIENTS
    x = g.unsqueeze(0) if g.dim() == 2 else g  # (n, rows, cols)
    x = x / (x.norm(dim=(1, 2), keepdim=True) + 1e-7)
    tall = x.size(1) > x.size(2)
    if tall:
        x = x.mT  # iterate on the wide side: X X^T is the smaller square
    for _ in range(steps):
        gram = x @ x.mT  # (n, r, r), r = min(rows, cols)
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)  # b gram + c gram^2, one product
        x = torch.baddbmm(x, poly, x, beta=a)  # a x + poly x
    x = x.mT if tall else x
    return x.squeeze(0) if g.dim() == 2 else x


def orthogonalize_reference(g: Tensor) -> Tensor:
    """U V^T from an exact SVD: what `orthogonalize` approximates (used by the tests)."""
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    return u @ vh


def muon_groups(model: nn.Module, weight_decay: float, lr: float, muon_lr: float) -> list[dict]:
    """Three groups: Muon (at muon_lr) for the 2-D weights inside transformer blocks; AdamW
    (at lr) with weight decay for the other 2-D weights (token and position embeddings,
    which the LM head shares) and without it for biases and LayerNorm gains."""
    muon, decay, no_decay = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.dim() == 2 and name.startswith("blocks."):
            muon.append(p)
        else:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [
        {"params": muon, "muon": True, "lr": muon_lr, "weight_decay": weight_decay},
        {"params": decay, "muon": False, "lr": lr, "weight_decay": weight_decay},
        {"params": no_decay, "muon": False, "lr": lr, "weight_decay": 0.0},
    ]


class Muon(torch.optim.Optimizer):
    """Muon for groups with `muon=True`, AdamW for the rest (see the module docstring).

    A Muon group steps W <- W (1 - lr wd) - lr * sqrt(max(1, rows/cols)) * orthogonalize(
    Nesterov momentum of the gradient); the square-root factor keeps the update's size per
    element comparable for tall and wide matrices.
    """

    def __init__(self, groups: list[dict], lr: float, momentum: float = 0.95,
                 betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8,
                 ns_dtype: torch.dtype = torch.float32) -> None:
        """ns_dtype: precision of the Newton-Schulz products. bf16 halves their cost where the
        hardware computes bf16 natively (what the paper does on GPUs); the iteration tolerates
        its rounding because every step pulls the singular values back toward 1."""
        super().__init__(groups, dict(lr=lr, momentum=momentum, betas=betas, eps=eps,
                                      weight_decay=0.0, muon=False))
        self.ns_dtype = ns_dtype
        self.register_load_state_dict_post_hook(Muon._steps_as_the_kernel_takes)

    @staticmethod
    def _steps_as_the_kernel_takes(optimizer: torch.optim.Optimizer) -> None:
        """After a load, once: every AdamW step count as torch's fused kernel takes it, a float32
        tensor on its parameter's device (a loaded state dict keeps it on the CPU, where the
        CUDA kernel refuses it; runs saved before 2026-12 stored it as an int)."""
        for p, state in optimizer.state.items():
            if "step" in state:
                state["step"] = torch.as_tensor(state["step"], dtype=torch.float32, device=p.device)

    @torch.no_grad()
    def step(self, closure=None) -> None:  # noqa: ANN001 (torch's signature)
        """One update of every parameter that has a gradient."""
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if group["muon"]:
                for p in params:
                    p.mul_(1 - group["lr"] * group["weight_decay"])  # decoupled, as AdamW's
                self._muon_update(params, group)
            else:
                self._adamw_update(params, group)

    def _muon_update(self, params: list[Tensor], group: dict) -> None:
        """Nesterov momentum per matrix, then one batched orthogonalisation per shape."""
        by_shape: dict[tuple[int, ...], list[tuple[Tensor, Tensor]]] = {}
        for p in params:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p)
            buf = state["momentum_buffer"]
            buf.mul_(group["momentum"]).add_(p.grad)
            nesterov = p.grad.add(buf, alpha=group["momentum"])
            by_shape.setdefault(tuple(p.shape), []).append((p, nesterov))
        for (rows, cols), pairs in by_shape.items():
            updates = orthogonalize(torch.stack([u for _, u in pairs]).to(self.ns_dtype))  # (n, rows, cols)
            step = -group["lr"] * math.sqrt(max(1.0, rows / cols))
            for (p, _), update in zip(pairs, updates, strict=True):
                p.add_(update.to(p.dtype), alpha=step)

    def _adamw_update(self, params: list[Tensor], group: dict) -> None:
        """AdamW (decoupled weight decay included) on `params`, by torch's fused kernel."""
        states = [self._adamw_state(p) for p in params]
        beta1, beta2 = group["betas"]
        adamw(params, [p.grad for p in params], [s["exp_avg"] for s in states],
              [s["exp_avg_sq"] for s in states], [], [s["step"] for s in states],
              fused=True, amsgrad=False, beta1=beta1, beta2=beta2, lr=group["lr"],
              weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)

    def _adamw_state(self, p: Tensor) -> dict:
        """The moments of `p`, and its step count as the tensor torch's kernel takes (float32 on
        `p`'s device; a loaded state is converted once, `_steps_as_the_kernel_takes`)."""
        state = self.state[p]
        if not state:
            state["step"] = torch.zeros((), device=p.device)
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        return state
