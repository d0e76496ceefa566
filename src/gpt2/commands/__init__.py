"""The `gpt2` subcommands, one thin module each over the library functions they run.

Each command's options are the fields of the dataclasses its library function takes
(options.py), so an option and its help text are written once.

Imports are split in two, so that `gpt2 --help` and `gpt2 CMD --help` answer in a fraction of a
second: at the top of a command module, only what jsonargparse reads to build the options (the
option dataclasses, which live in modules without torch: gpt2.runtime.options,
gpt2.generation.options, gpt2.data.options, gpt2.serving.options, gpt2.training.config);
inside the function that runs the command, everything that does the work (torch, numpy, the
tokenizers, the model). tests/test_cli_help.py checks that building every command's help
imports none of those.
"""
