"""The one chat template: a conversation as plain text that every tokenizer here can encode.

    System: You answer briefly.
    User: Who speaks first in Macbeth?
    Assistant: The First Witch.<|endoftext|>
    User: And last?
    Assistant:

Each message is its role's name, a colon, a space and the content, on its own line; an
assistant's turn ends with end-of-text (GPT-2's <|endoftext|>, the char and SentencePiece
tokenizers' own end-of-text id), which is where a model trained on this template stops. Only
letters, ':', ' ' and newlines are added, so a char tokenizer built from ordinary prose (no
'<' or '|') encodes it too. `render(..., add_generation_prompt=True)` ends with "Assistant:"
for the model to continue.

`encode` is how training and chat turn a conversation into ids: piece by piece, each piece
encoded as plain text (so "<|endoftext|>" typed by a user is text, not a stop), end-of-text as
its id. Decoding its ids gives back `render`'s text exactly (the round trip is tested, for
SentencePiece with end-of-text spelled as it decodes, ""); encoding
`render`'s text in one go can differ at piece boundaries with a BPE, so chat uses `encode`.
`encode` also says which ids the assistant wrote: the targets fine-tuning learns.

This module imports no torch: the template is shared by fine-tuning and chat.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gpt2.errors import GPT2Error

ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}
END_OF_TEXT = "<|endoftext|>"  # how render() spells the end of an assistant's turn
GENERATION_PROMPT = "Assistant:"


def check_messages(messages: Any, where: str = "messages") -> list[dict[str, str]]:
    """`messages` as a list of {"role", "content"} with known roles and string contents, or a
    GPT2Error naming `where` (e.g. 'data.jsonl line 3') and what is wrong."""
    if not isinstance(messages, list) or not messages:
        raise GPT2Error(f"{where}: 'messages' must be a non-empty list of {{\"role\", \"content\"}} objects")
    checked = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or "role" not in m:
            raise GPT2Error(f"{where}: message {i + 1} needs a 'role' and a string 'content'")
        if m["role"] not in ROLES:
            raise GPT2Error(f"{where}: message {i + 1} has the unknown role {m['role']!r}; "
                            f"use one of {', '.join(ROLES)}")
        checked.append({"role": m["role"], "content": m["content"]})
    return checked


def pieces(messages: Sequence[dict[str, str]], add_generation_prompt: bool = True) -> list[tuple[str, bool]]:
    """The conversation as (text, written by the assistant) pieces; END_OF_TEXT stands alone.
    The assistant's content (with its leading space) and its end-of-text are its own; the
    role names, the line breaks and every other message are context."""
    out: list[tuple[str, bool]] = []
    for i, m in enumerate(messages):
        if i:
            out.append(("\n", False))
        out.append((f"{ROLES[m['role']]}:", False))
        assistant = m["role"] == "assistant"
        out.append((f" {m['content']}", assistant))
        if assistant:
            out.append((END_OF_TEXT, True))
    if add_generation_prompt:
        out.append((("\n" if out else "") + GENERATION_PROMPT, False))
    return out


def render(messages: Sequence[dict[str, str]], add_generation_prompt: bool = True,
           end_of_text: str = END_OF_TEXT) -> str:
    """The conversation as the template's text (see the module docstring); with
    `add_generation_prompt`, ending in "Assistant:" for the model to continue. end_of_text:
    how to spell the end of an assistant's turn (a SentencePiece model decodes its end-of-text
    id as "": `render(m, end_of_text=tok.decode([tok.eot_id])) == tok.decode(encode(tok, m)[0])`)."""
    parts = pieces(check_messages(list(messages)), add_generation_prompt)
    return "".join(end_of_text if text == END_OF_TEXT else text for text, _ in parts)


def encode(tokenizer: Any, messages: Sequence[dict[str, str]],
           add_generation_prompt: bool = False) -> tuple[list[int], list[bool]]:
    """(ids, assistant) of the conversation: token ids whose decoding is `render`'s text, and
    for each id whether the assistant wrote it (what fine-tuning learns to predict).
    A tokenizer error (a character a char vocabulary lacks) is raised as it is."""
    ids: list[int] = []
    assistant: list[bool] = []
    for text, own in pieces(check_messages(list(messages)), add_generation_prompt):
        piece = [tokenizer.eot_id] if text == END_OF_TEXT else tokenizer.encode(text, allow_special=False)
        ids += piece
        assistant += [own] * len(piece)
    return ids, assistant
