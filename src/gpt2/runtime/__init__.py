"""The machine: where and how the model runs, and what `auto` means on the hardware at hand.

One place resolves `auto` (precision, attention kernel, CPU threads) for every command
(train, eval, generate, serve); the model core (gpt_model.py and the files it is built from)
knows nothing of it and takes concrete values.

    options.py   DeviceOptions: what the user asks for (`--device`, `--dtype`, `--threads`);
                 no torch, so `--help` stays quick
    device.py    what those names mean in torch (devices, dtypes, autocast)
    hardware.py  facts about the CPU and the torch build
    probe.py     the timed, cached CPU probe
    autotune.py  facts and timings -> a Choice (pure rules, testable)
    resolve.py   DeviceOptions -> Runtime: the decision a run uses, with one line saying why

This file imports nothing, so that reading `gpt2.runtime.options` does not import torch.
"""
