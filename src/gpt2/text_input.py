"""Text that comes from outside (a command-line argument, a line of stdin, a file) as a str that
every tokenizer can encode, or a one-line error.

Python turns bytes that are not UTF-8 in a command-line argument (and, with
errors="surrogateescape", in stdin) into lone surrogates, which no encoder accepts; the
error then surfaces deep in a tokenizer as a traceback. `utf8_text` catches them where the
text enters and names the byte. `read_text_file` reads a prompt file of bounded size that
must be a regular file (never /dev/zero or a fifo).
"""

from __future__ import annotations

from pathlib import Path

from gpt2.errors import GPT2Error

MAX_TEXT_BYTES = 16 << 20  # a prompt longer than this is longer than any model's context many times


def utf8_text(text: str, where: str) -> str:
    """`text`, if it is valid Unicode (no lone surrogate from bytes that were not UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        char = ord(text[err.start])
        byte = f"byte 0x{char - 0xDC00:02x}" if 0xDC80 <= char <= 0xDCFF else f"U+{char:04X}"
        raise GPT2Error(f"{where} is not valid UTF-8 text ({byte} at character {err.start}); give UTF-8 "
                        "text") from None
    return text


def read_text_file(path: Path, where: str) -> str:
    """The UTF-8 text of a regular file of at most MAX_TEXT_BYTES."""
    if not path.exists():
        raise GPT2Error(f"{where} {path}: no such file")
    if not path.is_file():
        raise GPT2Error(f"{where} {path}: not a regular file")
    if path.stat().st_size > MAX_TEXT_BYTES:
        raise GPT2Error(f"{where} {path}: {path.stat().st_size:,} bytes, more than the {MAX_TEXT_BYTES:,} a "
                        "prompt may be")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise GPT2Error(f"{where} {path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
