"""The original project's training API: a plain epoch loop over (input, target) batches.

`train_model` and `evaluate_model` keep the signatures of the original project so its
quick start runs unchanged. They are deliberately short: one forward, one loss, one
backward, one optimizer step. The `Trainer` engine (gpt2.training.engine) adds
schedules, checkpoints and distribution around the same loss function.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from gpt2.loss import cross_entropy_loss


def calc_loss_batch(input_batch: Tensor, target_batch: Tensor, model: nn.Module,
                    device: torch.device | str) -> Tensor:
    """Mean next-token loss of one batch. input_batch, target_batch: (B, T) token ids."""
    input_batch, target_batch = input_batch.to(device), target_batch.to(device)
    logits = model(input_batch)  # (B, T, vocab_size)
    return cross_entropy_loss(logits, target_batch)


def calc_loss_loader(data_loader: Iterable, model: nn.Module, device: torch.device | str,
                     num_batches: int | None = None) -> float:
    """Average batch loss over the first `num_batches` batches (all of them if None).

    Returns nan for an empty loader, as the original did, rather than dividing by zero.
    """
    total, count = 0.0, 0
    for i, (input_batch, target_batch) in enumerate(data_loader):
        if num_batches is not None and i >= num_batches:
            break
        total += calc_loss_batch(input_batch, target_batch, model, device).item()
        count += 1
    return total / count if count else float("nan")


def evaluate_model(model: nn.Module, train_loader: Iterable, val_loader: Iterable,
                   device: torch.device | str, eval_iter: int) -> tuple[float, float]:
    """Train and validation loss over `eval_iter` batches each, without dropout or gradients."""
    model.eval()
    with torch.no_grad():
        train_loss = calc_loss_loader(train_loader, model, device, num_batches=eval_iter)
        val_loss = calc_loss_loader(val_loader, model, device, num_batches=eval_iter)
    model.train()
    return train_loss, val_loss


def _context_length(model: nn.Module) -> int:
    cfg = getattr(model, "cfg", None)
    if cfg is not None:
        return cfg.context_length
    return model.pos_emb.weight.shape[0]  # a model with GPT-2's layout but no cfg


def generate_and_print_sample(model: nn.Module, tokenizer: Any, device: torch.device | str,
                              start_context: str, max_new_tokens: int = 50) -> str:
    """Greedy-decode a continuation of `start_context` and print it on one line."""
    from gpt2.generation import generate_text

    model.eval()
    encoded = torch.tensor(tokenizer.encode(start_context), device=device).unsqueeze(0)  # (1, T)
    with torch.no_grad():
        token_ids = generate_text(model, encoded, max_new_tokens, context_size=_context_length(model))
    text = tokenizer.decode(token_ids[0].tolist())
    print(text.replace("\n", " "))
    model.train()
    return text


def train_model(model: nn.Module, train_loader: Iterable, val_loader: Iterable,
                optimizer: torch.optim.Optimizer, device: torch.device | str, num_epochs: int,
                eval_freq: int, eval_iter: int, start_context: str,
                tokenizer: Any) -> tuple[list[float], list[float], list[int]]:
    """Train for `num_epochs` passes over `train_loader`.

    Every `eval_freq` steps, record train and validation loss (over `eval_iter` batches)
    and the number of tokens seen so far; after each epoch, print a greedy sample.
    Returns (train_losses, val_losses, tokens_seen), one entry per evaluation.
    """
    train_losses, val_losses, track_tokens_seen = [], [], []
    tokens_seen, global_step = 0, -1
    for epoch in range(num_epochs):
        model.train()
        for input_batch, target_batch in train_loader:
            optimizer.zero_grad()
            loss = calc_loss_batch(input_batch, target_batch, model, device)
            loss.backward()  # gradients of the loss w.r.t. every parameter
            optimizer.step()
            tokens_seen += input_batch.numel()
            global_step += 1
            if global_step % eval_freq == 0:
                train_loss, val_loss = evaluate_model(model, train_loader, val_loader, device, eval_iter)
                train_losses.append(train_loss)
                val_losses.append(val_loss)
                track_tokens_seen.append(tokens_seen)
                print(f"Ep {epoch + 1} (Step {global_step:06d}): "
                      f"Train loss {train_loss:.3f}, Val loss {val_loss:.3f}")
        generate_and_print_sample(model, tokenizer, device, start_context)
    return train_losses, val_losses, track_tokens_seen
