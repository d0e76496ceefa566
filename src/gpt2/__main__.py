"""The `gpt2` command's entry point (also `python -m gpt2 ...`, which works under torchrun).

It imports the commands inside a guard, so Ctrl-C during the first moments (while the
command-line parser is being imported) ends the command quietly too, with exit status 130;
`gpt2.cli.main` does the same for Ctrl-C while a command imports torch and runs.
"""

import sys


def main() -> None:
    try:
        from gpt2.cli import main as run
    except KeyboardInterrupt:
        print("gpt2: interrupted", file=sys.stderr)
        sys.exit(130)
    run()


if __name__ == "__main__":
    main()
