"""The one error type for mistakes a user can fix.

Every check that refuses bad input (a setting, a file, a prompt) raises `GPT2Error` with
one line that names the thing and what to do. The `gpt2` command prints such errors
(and the file system's `OSError`s) as that one line; any other exception is a bug in this
package and keeps its traceback. `GPT2Error` is a `ValueError`, so code that already
catches ValueError keeps working.
"""


class GPT2Error(ValueError):
    """A mistake the user can fix: bad input, a missing or corrupt file, settings that clash."""


class CheckpointError(GPT2Error):
    """A checkpoint directory is missing, incomplete, corrupt, or does not match."""
