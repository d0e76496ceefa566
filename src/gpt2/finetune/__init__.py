"""Fine-tuning a trained GPT-2: chat / instruction SFT, classification, LoRA (docs/finetuning.md)."""
