"""Stop strings over streamed text: however the text is cut into pieces, what is sent is the
text up to the first stop string, and nothing past it is ever sent early."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gpt2.generation.stopping import StopMatcher

ALPHABET = "ab\n"


def expected(text: str, stops: list[str]) -> str:
    cuts = [i for s in stops if (i := text.find(s)) >= 0]
    return text[:min(cuts)] if cuts else text


@given(text=st.text(ALPHABET, max_size=30),
       stops=st.lists(st.text(ALPHABET, min_size=1, max_size=3), max_size=3),
       cuts=st.lists(st.integers(0, 30), max_size=10))
def test_the_sent_text_is_the_text_before_the_first_stop_string(text, stops, cuts):
    bounds = sorted({0, len(text), *(c for c in cuts if c <= len(text))})
    pieces = [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    matcher, sent, stopped = StopMatcher(stops), "", False
    for piece in pieces:
        out, stopped = matcher.feed(piece)
        sent += out
        assert expected(text, stops).startswith(sent)  # never ahead of the truth
        if stopped:
            break
    if not stopped:
        sent += matcher.flush()
    assert sent == expected(text, stops)
    assert stopped == any(s in text for s in stops)


def test_a_possible_stop_string_is_held_back_until_it_is_decided():
    matcher = StopMatcher(["\n\n"])
    assert matcher.feed("Hello\n") == ("Hello", False)  # "\n" may begin "\n\n"
    assert matcher.feed("world") == ("\nworld", False)  # it did not
    assert matcher.feed("\n") == ("", False)
    assert matcher.feed("\nmore") == ("", True)
