"""The output alphabet of the CTC models: blank, space, apostrophe and the 26 lower-case letters.

Transcripts are normalised (lower case, runs of white space joined) and must use only these
characters: a digit or any other symbol is refused with the line it is on, so that a transcript is
never silently changed (write numbers as words: "seven oh two").
"""

from __future__ import annotations

from rnnkit.errors import UserError

#: the characters after the blank (index 0)
ALPHABET = " 'abcdefghijklmnopqrstuvwxyz"
BLANK = 0


def normalize(text: str) -> str:
    """Lower case, white space joined to single spaces, no leading or trailing space."""
    return " ".join(text.lower().split())


def check_text(text: str, where: str, alphabet: str = ALPHABET) -> str:
    """``text`` normalised, or a one-line error naming ``where`` and the first character not allowed."""
    norm = normalize(text)
    if not norm:
        raise UserError(f"{where}: the transcript is empty")
    allowed = set(alphabet)
    for ch in norm:
        if ch not in allowed:
            raise UserError(f"{where}: character {ch!r} is not in the alphabet (letters, space, apostrophe); "
                            "write numbers and symbols as words")
    return norm


def encode(text: str, alphabet: str = ALPHABET) -> list[int]:
    """Token ids (1-based: 0 is the blank) of a normalised transcript."""
    index = {c: i + 1 for i, c in enumerate(alphabet)}
    return [index[c] for c in text]


def decode(ids: list[int], alphabet: str = ALPHABET) -> str:
    """The text of token ids (blanks dropped), white space normalised."""
    return normalize("".join(alphabet[i - 1] for i in ids if 0 < i <= len(alphabet)))
