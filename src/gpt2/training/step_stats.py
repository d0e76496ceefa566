"""What the training loop learns about its steps, read without stalling the device.

Reading a number off an accelerator (`.item()`, `float()`) makes the host wait until the device
has finished everything queued so far; done every step, the device then idles while the host
prepares the next one. So the loop keeps each step's loss and gradient norm as device tensors
(`LossReader.record`) and reads them all at once only at chosen steps: every log_interval
steps, before every evaluation and save, and at the end. Consequences, by design:

- divergence (a NaN or infinite loss) is detected within log_interval steps, at the next read,
  with the exact step it happened at; since a read precedes every save, a NaN never overwrites
  the last good checkpoint;
- speed is measured between reads (`Throughput`), where host and device are in step, and
  excludes warm-up (compilation) and the time spent evaluating and saving.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from gpt2.training.mfu import mfu

WARMUP_STEPS = 3  # steps of each invocation left out of speed figures: compilation, allocator warm-up


@dataclass(frozen=True)
class Reading:
    """The floats of the steps since the previous read."""

    step: int  # the step read at
    loss: float  # the mean loss of that step (over all processes)
    grad_norm: float  # its gradient norm before clipping (nan without clipping)
    first_bad: tuple[int, float] | None  # (step, loss) of the first non-finite loss, if any


def synchronize(device: torch.device) -> None:
    """Wait until `device` has finished its queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class LossReader:
    """Each step's loss (and the last gradient norm) kept on the device until `read`."""

    def __init__(self) -> None:
        self._losses: list[tuple[int, Tensor]] = []  # (step, loss ()) since the last read
        self._grad_norm: Tensor | None = None

    def record(self, step: int, loss: Tensor, grad_norm: Tensor | None) -> None:
        """Keep `step`'s loss () and gradient norm () without reading them."""
        self._losses.append((step, loss.detach()))
        self._grad_norm = grad_norm

    def read(self, device: torch.device) -> Reading:
        """Wait for `device` (so the time is right) and read everything recorded since the previous read."""
        synchronize(device)
        steps = [s for s, _ in self._losses]
        norm = self._grad_norm if self._grad_norm is not None else torch.tensor(math.nan)
        values = torch.stack([t for _, t in self._losses] + [norm.to(self._losses[-1][1].device)]).tolist()
        losses, grad_norm = values[:-1], values[-1]
        self._losses.clear()
        bad = next(((s, v) for s, v in zip(steps, losses, strict=True) if not math.isfinite(v)), None)
        return Reading(steps[-1], losses[-1], grad_norm, bad)


class Throughput:
    """Steady-state speed: ms/step, tokens/s and MFU, timed between reads.

    `window(step)` is called right after a read (host and device in step): it closes the window
    opened by the previous call or `restart`. A window is steady when it starts at or after the
    end of warm-up (WARMUP_STEPS after this invocation's first step). `restart(step)` after an
    evaluation or a save starts a new window, so their time is not counted as training.
    """

    def __init__(self, tokens_per_step: int, flops_per_token: float, world_size: int, peak: float | None,
                 first_step: int, warmup_steps: int = WARMUP_STEPS) -> None:
        self.tokens_per_step, self.flops_per_token = tokens_per_step, flops_per_token
        self.world_size, self.peak = world_size, peak
        self.warmup_end = first_step + warmup_steps
        self.seconds, self.steps = 0.0, 0  # steady-state totals
        self.restart(first_step)

    def due(self, step: int) -> bool:
        """True at the step that ends warm-up: a read there starts the first steady window."""
        return step == self.warmup_end

    def restart(self, step: int) -> None:
        """Open a window at `step` (now)."""
        self._start_time, self._start_step = time.perf_counter(), step

    def window(self, step: int) -> dict[str, float] | None:
        """Speed since the window opened, or None while warming up; opens the next window."""
        seconds, steps = time.perf_counter() - self._start_time, step - self._start_step
        steady = self._start_step >= self.warmup_end and steps > 0 and seconds > 0
        self.restart(step)
        if not steady:
            return None
        self.seconds += seconds
        self.steps += steps
        return self.figures(seconds, steps)

    def figures(self, seconds: float, steps: int) -> dict[str, float]:
        """{ms_per_step, tokens_per_s[, mfu]} of `steps` steps in `seconds` (tokens over all
        processes; MFU per device, over one device's peak)."""
        tokens_per_s = self.tokens_per_step * steps / seconds
        out = {"ms_per_step": 1e3 * seconds / steps, "tokens_per_s": tokens_per_s}
        achieved = mfu(tokens_per_s * self.flops_per_token / self.world_size, self.peak)
        if achieved is not None:
            out["mfu"] = achieved
        return out

    def summary(self) -> dict[str, float]:
        """The steady-state figures of the whole invocation ({} if it never left warm-up)."""
        return self.figures(self.seconds, self.steps) if self.steps else {}


def speed_text(figures: dict[str, float] | None) -> str:
    """'12.3 ms/step, 45,678 tokens/s, MFU 31.0%' (MFU left out when unknown)."""
    if not figures:
        return ""
    text = f"{figures['ms_per_step']:.1f} ms/step, {figures['tokens_per_s']:,.0f} tokens/s"
    return text + (f", MFU {figures['mfu']:.1%}" if "mfu" in figures else "")


def bar_speed(figures: dict[str, float] | None) -> dict[str, str]:
    """The progress bar's speed fields: tokens/s and MFU (nothing while warming up)."""
    if not figures:
        return {}
    fields = {"tok_s": f"{figures['tokens_per_s']:,.0f}"}
    if "mfu" in figures:
        fields["mfu"] = f"{figures['mfu']:.1%}"
    return fields


def diverged_message(reading: Reading, latest: Path, lr: float) -> str:
    """Why the run stopped (reading.first_bad: a non-finite loss) and what to try."""
    assert reading.first_bad is not None
    step, loss = reading.first_bad
    kept = f"the last good checkpoint is {latest}" if latest.exists() else "no checkpoint was written"
    seen = ""
    if reading.step > step:
        seen = f" (losses are read every --train.log_interval steps; seen at step {reading.step})"
    return (f"loss became {loss} at step {step}{seen}; {kept}. Try a lower --optim.lr (now {lr:g}), gradient "
            "clipping (--optim.grad_clip 1.0), more warmup (--optim.warmup_steps), or --system.dtype float32")
