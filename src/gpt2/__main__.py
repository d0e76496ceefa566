"""`python -m gpt2 ...` is the same as the `gpt2` command (and works under torchrun)."""

from gpt2.cli import main

if __name__ == "__main__":
    main()
