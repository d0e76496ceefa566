"""The `gpt2` command's entry point (also `python -m gpt2 ...`, which works under torchrun).

It imports the commands inside a guard, so Ctrl-C during the first moments (while the
command-line parser is being imported) ends the command quietly too, with exit status 130;
`gpt2.cli.main` does the same for Ctrl-C while a command imports torch and runs.

A command that failed or was interrupted has already cleaned up and printed its one line;
the process then ends at once (`os._exit`), without the interpreter's exit-time joins of
worker processes and their threads, which can wait forever on a pool abandoned mid-task.
Worker processes die with it (gpt2/signals.py).
"""

import os
import sys


def main() -> None:
    try:
        from gpt2.cli import main as run
    except KeyboardInterrupt:
        print("gpt2: interrupted", file=sys.stderr)
        sys.exit(130)
    try:
        run()
    except SystemExit as stop:
        if stop.code in (0, None):
            raise
        if not isinstance(stop.code, int):
            print(stop.code, file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(stop.code if isinstance(stop.code, int) else 1)


if __name__ == "__main__":
    main()
