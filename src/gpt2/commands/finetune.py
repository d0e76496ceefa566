"""`gpt2 finetune`, `gpt2 classify`, `gpt2 merge`: adapt a trained GPT-2 to your own examples
(chat / instructions, or classification, fully or with LoRA), use a classifier, and fold LoRA
adapters into a full checkpoint. See docs/finetuning.md."""

from __future__ import annotations

import sys
from pathlib import Path

from gpt2.finetune.options import (
    FinetuneConfig,
    FinetuneDataSection,
    FinetuneEvalSection,
    FinetuneOptimSection,
    FinetuneTrainSection,
    LoRASection,
    Task,
    TaskSection,
    Trainable,
)
from gpt2.runtime.options import DeviceOptions
from gpt2.training.config import CheckpointSection, ModelSection, SystemSection


def finetune(task: Task, model: ModelSection, data: FinetuneDataSection, lora: LoRASection,
             optim: FinetuneOptimSection, train: FinetuneTrainSection, eval: FinetuneEvalSection,
             checkpoint: CheckpointSection, system: SystemSection, trainable: Trainable = "all",
             resume: bool = False, overwrite: bool = False, allow_changes: bool = False) -> None:
    """Fine-tune a GPT-2 (--model.init: our checkpoint or a Hugging Face GPT-2 folder) on your examples.

    Example: gpt2 finetune --task chat --model.init runs/base/latest --data.train chats.jsonl
    --lora.rank 8 --train.out_dir runs/chat.

    Args:
        task: chat: learn the assistant's turns of conversations (JSONL messages or Alpaca
            records); classify: learn a label per text (CSV or JSONL) with a head on the last token.
        trainable: Without LoRA: all weights, or last: only the last block, the final LayerNorm
            (and the class head).
        resume: Continue the run in --train.out_dir from its latest/ checkpoint.
        overwrite: Replace a run in --train.out_dir (kept aside until the new run's first checkpoint).
        allow_changes: With --resume, accept settings that differ from the saved run's.
    """
    from gpt2.commands.train import print_summary
    from gpt2.finetune.evaluate import report_rows
    from gpt2.finetune.launch import build_finetuner
    from gpt2.finetune.metrics import format_report
    from gpt2.training.distributed import process_group
    from gpt2.training.engine import TrainingInterruptedError

    cfg = FinetuneConfig(TaskSection(task, trainable), model, data, lora, optim, train, eval, checkpoint,
                         system)
    trainer = build_finetuner(cfg, resume=resume, allow_changes=allow_changes, overwrite=overwrite)
    with process_group(trainer.info), trainer.checkpoints:  # the run folder is released at the end
        if resume and trainer.progress.step >= trainer.cfg.train.max_steps:
            print(f"gpt2: the run in {train.out_dir} already finished at step {trainer.progress.step}",
                  file=sys.stderr)
            return
        try:
            summary = trainer.fit()
        except TrainingInterruptedError as stop:
            print(f"gpt2: {stop}", file=sys.stderr)
            sys.exit(130)
        except BaseException:
            trainer.checkpoints.undo_unsaved_run()
            raise
    if not trainer.info.is_main:
        return
    print_summary(summary)
    if task == "classify":
        rows = trainer.validator.val_batches(None)
        import torch

        X = torch.cat([x for x, _ in rows]).cpu().numpy()
        Y = torch.cat([y for _, y in rows]).cpu().numpy()
        out = Path(train.out_dir) / "classification.json"
        report = report_rows(trainer.raw_model, X, Y, trainer.raw_model.classes, out)
        print(f"\n== held-out classification (saved in {out}) ==\n{format_report(report)}")


def classify(checkpoint: str, file: str | None = None, text: str | None = None, text_field: str = "text",
             label_field: str = "label", out: str | None = None, device: str = "auto") -> None:
    """Classify texts with a classifier made by `gpt2 finetune --task classify`.

    Example: gpt2 classify --checkpoint runs/genre/latest --file test.csv --out report.json.

    Args:
        checkpoint: A classifier checkpoint (full or LoRA).
        file: Labelled examples (CSV or JSONL): prints accuracy, per-class precision and recall
            and the confusion matrix.
        text: A text to classify: prints its class and the probability the model gives it.
        text_field: The column / key of the text in --file.
        label_field: The column / key of the label in --file.
        out: Write the report on --file to this JSON file.
        device: auto, cpu, cuda, cuda:N, mps.
    """
    import torch

    from gpt2.errors import GPT2Error
    from gpt2.finetune.evaluate import labelled_rows, report_rows
    from gpt2.finetune.metrics import format_report
    from gpt2.finetune.saved import load_finetuned
    from gpt2.runtime.device import pick_device

    DeviceOptions(device=device)
    model, tokenizer, info = load_finetuned(checkpoint, pick_device(device))
    if info["task"] != "classify":
        raise GPT2Error(f"--checkpoint {checkpoint}: a {info['task']} model, not a classifier")
    if not file and not text:
        raise GPT2Error("give --file (labelled examples) or --text (texts to classify)")
    width = model.cfg.context_length
    for t in [text] if text else []:
        ids = tokenizer.encode(t, allow_special=False)[-width:]
        with torch.no_grad():
            logits = model(torch.tensor([ids], device=model.device))[0, -1]  # (C,)
        probs = logits.float().softmax(-1)
        best = int(probs.argmax())
        print(f"{model.classes[best]}\t{float(probs[best]):.3f}\t{t}")
    if file:
        X, Y = labelled_rows(file, tokenizer, model.classes, width, text_field, label_field)
        report = report_rows(model, X, Y, model.classes, Path(out) if out else None)
        print(format_report(report))


def merge(checkpoint: str, out: str) -> None:
    """Fold the LoRA adapters of a fine-tuned checkpoint into a full checkpoint.

    The result (config.json + model.safetensors) loads in GPT2.from_pretrained, `gpt2 generate`
    and transformers' GPT2LMHeadModel; a classifier keeps its head.safetensors beside it.

    Args:
        checkpoint: A checkpoint made by `gpt2 finetune` with --lora.rank > 0.
        out: Directory to write the merged checkpoint to.
    """
    from gpt2.finetune.saved import merge_checkpoint

    path = merge_checkpoint(checkpoint, out)
    print(f"gpt2: merged checkpoint written to {path}", file=sys.stderr)


def examples(kind: str, out: str, n: int = 1000, seed: int = 0, plays: list[str] | None = None) -> None:
    """Write fine-tuning examples made from offline sources (see gpt2.finetune.generators).

    Example: gpt2 examples --kind play --out data/play.jsonl --n 2000 --plays [macbeth,tempest].

    Args:
        kind: speaker, play, continue (Shakespeare instructions), arithmetic, reverse (chat JSONL);
            genre (classification CSV: comedy / history / tragedy, from the First Folio's catalogue).
        out: The file to write (.jsonl for chat kinds, .csv for genre).
        n: How many examples.
        seed: Seed of the random choices (the same seed writes the same file).
        plays: Only these plays (file stems of the corpus, e.g. macbeth, tempest); default all Folio plays.
    """
    from gpt2.finetune.generators import write_examples

    path = write_examples(kind, out, n, seed, plays)
    print(f"gpt2: wrote {n} {kind} examples to {path}", file=sys.stderr)
