"""Turning a stream of token ids into a stream of text that never shows a broken character.

A byte-level tokenizer (GPT-2's BPE, SentencePiece with byte fallback) may split one
character across tokens: the emoji 😀 is four UTF-8 bytes and can arrive as two tokens of
two bytes each. Decoding the first token alone gives U+FFFD, the replacement character.
`StreamDecoder` holds such a tail back until the tokens that complete it arrive.

It works with any tokenizer that has `decode(ids) -> str`: it re-decodes a short window of
recent ids and emits only the text that has become stable (the technique of Hugging Face's
TextStreamer and vLLM's incremental detokenizer). The window starts a few tokens back
so that tokenizers whose decode depends on the previous piece (SentencePiece turns a
leading "▁" into a space only after other text) give the same text as one big decode.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

REPLACEMENT = "\ufffd"  # what decode(errors="replace") puts where bytes are incomplete


class StreamDecoder:
    """Feed ids as they are generated; get back the new text that is safe to print.

    ids before `read` are already printed; `prefix` < `read` marks the start of the window
    that is re-decoded for context. The prompt can be given as context (its text is not
    emitted) so the first generated piece decodes as it would inside the whole text.
    """

    def __init__(self, tokenizer: Any, context_ids: Sequence[int] = (), context_tokens: int = 4) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = list(context_ids)[-context_tokens:] if context_tokens else []
        self.prefix = 0  # start of the re-decoded window
        self.read = len(self.ids)  # ids before this have been turned into emitted text
        self.context_tokens = max(1, context_tokens)

    def push(self, new_ids: int | Iterable[int]) -> str:
        """Add one id (or several); return the text that became complete (maybe "")."""
        self.ids.extend([new_ids] if isinstance(new_ids, int) else new_ids)
        done = self.tokenizer.decode(self.ids[self.prefix:self.read])
        text = self.tokenizer.decode(self.ids[self.prefix:])
        if text.endswith(REPLACEMENT) or len(text) <= len(done):
            return ""  # an incomplete character at the end (or nothing new yet): wait
        self.prefix = max(self.prefix, len(self.ids) - self.context_tokens)
        self.read = len(self.ids)
        self._trim()
        return text[len(done):]

    def flush(self) -> str:
        """The rest at the end of generation, without a trailing incomplete character."""
        done = self.tokenizer.decode(self.ids[self.prefix:self.read])
        text = self.tokenizer.decode(self.ids[self.prefix:]).rstrip(REPLACEMENT)
        self.read = len(self.ids)
        return text[len(done):]

    def _trim(self) -> None:
        """Forget ids that can no longer be part of a window, so memory stays constant."""
        if self.prefix > 64:
            self.ids = self.ids[self.prefix:]
            self.read -= self.prefix
            self.prefix = 0

