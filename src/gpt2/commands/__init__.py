"""The `gpt2` subcommands, one thin module each over the library functions they run.

Each command's options are the fields of the dataclasses its library function takes
(options.py), so an option and its help text are written once.
"""
