"""The translation vocabulary: one joint vocabulary for source and target, saved as ``tokenizer.json``.

- ``bpe``: byte-level BPE trained with HF ``tokenizers`` on the training sources and targets together
  (a joint vocabulary lets the model share embeddings and copy names and numbers). Byte level: any
  text is encodable, so an unknown word at translate time falls back to smaller pieces, never to an error.
- ``bpe-separate``: two byte-level BPE vocabularies of ``bpe_vocab`` pieces each, one for the sources and
  one for the targets (language pairs with different scripts), in one id space (below).
- ``char``: one token per character (toy tasks); a character not seen in training becomes ``<unk>``.
- ``g2p``: grapheme-to-phoneme: the source is lower-cased and cut into characters, the target into
  whitespace-separated symbols (ARPAbet phonemes: ``HH AH0 L OW1`` is four tokens); one id space holds
  both tables (a character and a phoneme never share an id). Unseen characters or symbols: ``<unk>``.

Ids 0-3 are ``<pad>``, ``<unk>``, ``<s>`` (BOS), ``</s>`` (EOS) in every kind. Every vocabulary has
``encode_source``/``encode_target`` (the same function for ``bpe`` and ``char``), ``decode`` (target
ids to text) and ``source_pieces``/``target_pieces`` (the tokens as strings, for attention plots).
"""

from __future__ import annotations

import json
from pathlib import Path

from rnnkit.errors import UserError
from rnnkit.io.atomic import write_text_atomic

TOKENIZER_FILE = "tokenizer.json"
SPECIALS = ("<pad>", "<unk>", "<s>", "</s>")
PAD, UNK, BOS, EOS = 0, 1, 2, 3
MAX_TOKENIZER_BYTES = 64 << 20


class CharVocab:
    kind = "char"

    def __init__(self, chars: list[str]) -> None:
        self.symbols = [*SPECIALS, *chars]
        self.index = {c: i for i, c in enumerate(self.symbols) if i >= len(SPECIALS)}

    @classmethod
    def train(cls, texts: list[str]) -> CharVocab:
        return cls(sorted(set("".join(texts))))

    @property
    def vocab_size(self) -> int:
        return len(self.symbols)

    def encode(self, text: str) -> list[int]:
        get = self.index.get
        return [get(c, UNK) for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join("\ufffd" if i == UNK else self.symbols[i] for i in ids if i == UNK or i >= len(SPECIALS))

    encode_source = encode_target = encode

    def pieces(self, ids: list[int]) -> list[str]:
        return [self.symbols[i] for i in ids]

    source_pieces = target_pieces = pieces

    def to_json(self) -> str:
        return json.dumps({"rnnkit_translate_chars": self.symbols[len(SPECIALS):]}, ensure_ascii=False)


class G2PVocab:
    """Characters in, whitespace-separated symbols out (see the module docstring)."""

    kind = "g2p"

    def __init__(self, chars: list[str], phones: list[str]) -> None:
        self.chars, self.phones = list(chars), list(phones)
        self.symbols = [*SPECIALS, *self.chars, *self.phones]
        self.char_index = {c: i + len(SPECIALS) for i, c in enumerate(self.chars)}
        self.phone_index = {p: i + len(SPECIALS) + len(self.chars) for i, p in enumerate(self.phones)}

    @classmethod
    def train(cls, sources: list[str], targets: list[str]) -> G2PVocab:
        return cls(sorted(set("".join(sources).lower())), sorted({p for t in targets for p in t.split()}))

    @property
    def vocab_size(self) -> int:
        return len(self.symbols)

    def encode_source(self, text: str) -> list[int]:
        get = self.char_index.get
        return [get(c, UNK) for c in text.strip().lower()]

    def encode_target(self, text: str) -> list[int]:
        get = self.phone_index.get
        return [get(p, UNK) for p in text.split()]

    def decode(self, ids: list[int]) -> str:
        """Symbols separated by one space; a generated character id decodes as that character (a wrong
        phoneme, counted as one by the error rates)."""
        return " ".join("<unk>" if i == UNK else self.symbols[i] for i in ids if i == UNK or i >= len(SPECIALS))

    def pieces(self, ids: list[int]) -> list[str]:
        return [self.symbols[i] for i in ids]

    source_pieces = target_pieces = pieces

    def to_json(self) -> str:
        return json.dumps({"rnnkit_translate_g2p": {"source": self.chars, "target": self.phones}},
                          ensure_ascii=False)


class BpeVocab:
    kind = "bpe"

    def __init__(self, tok) -> None:
        self.tok = tok

    @classmethod
    def train(cls, texts: list[str], vocab_size: int) -> BpeVocab:
        from rnnkit.apps.bpe import train_byte_level_bpe

        tok = train_byte_level_bpe(texts, vocab_size, list(SPECIALS), add_prefix_space=True)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text).ids

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode([i for i in ids if i >= len(SPECIALS)]).strip()

    encode_source = encode_target = encode

    def pieces(self, ids: list[int]) -> list[str]:
        """Each id decoded alone, a leading space shown as ``▁`` (a piece holding part of a character's
        bytes shows as the replacement character)."""
        return [self.tok.decode([i]).replace(" ", "\u2581") if i >= len(SPECIALS) else SPECIALS[i] for i in ids]

    source_pieces = target_pieces = pieces

    def to_json(self) -> str:
        return self.tok.to_str()


class SeparateBpeVocab:
    """Two byte-level BPE vocabularies, one trained on the sources and one on the targets, in one id space:
    source pieces keep their ids, target pieces follow them (a source and a target piece never share an
    id, so a shared embedding table holds two separate tables, as for ``g2p``)."""

    kind = "bpe-separate"

    def __init__(self, source, target) -> None:
        self.source, self.target = BpeVocab(source), BpeVocab(target)
        self.offset = self.source.vocab_size - len(SPECIALS)  # target piece i >= 4 has id offset + i

    @classmethod
    def train(cls, sources: list[str], targets: list[str], vocab_size: int) -> SeparateBpeVocab:
        return cls(BpeVocab.train(sources, vocab_size).tok, BpeVocab.train(targets, vocab_size).tok)

    @property
    def vocab_size(self) -> int:
        return self.offset + self.target.vocab_size

    def encode_source(self, text: str) -> list[int]:
        return self.source.encode(text)

    def _shift(self, ids: list[int]) -> list[int]:
        return [i + self.offset if i >= len(SPECIALS) else i for i in ids]

    def encode_target(self, text: str) -> list[int]:
        return self._shift(self.target.encode(text))

    def _unshift(self, ids: list[int]) -> list[int]:
        """Target ids back to the target tokenizer's (a generated source piece decodes as ``<unk>``)."""
        return [i - self.offset if i >= len(SPECIALS) + self.offset else (i if i < len(SPECIALS) else UNK)
                for i in ids]

    def decode(self, ids: list[int]) -> str:
        return self.target.decode(self._unshift(ids))

    def source_pieces(self, ids: list[int]) -> list[str]:
        return self.source.pieces(ids)

    def target_pieces(self, ids: list[int]) -> list[str]:
        return self.target.pieces(self._unshift(ids))

    def to_json(self) -> str:
        return json.dumps({"rnnkit_translate_bpe_separate": {"source": self.source.to_json(),
                                                             "target": self.target.to_json()}})


Vocab = CharVocab | BpeVocab | G2PVocab | SeparateBpeVocab


def build_vocab(kind: str, texts: list[str], bpe_vocab: int, targets: list[str] | None = None) -> Vocab:
    """The vocabulary of ``kind`` trained on ``texts`` (sources and targets together), or for ``g2p`` and
    ``bpe-separate`` on ``texts`` as sources and ``targets``."""
    if kind == "bpe-separate":
        return SeparateBpeVocab.train(texts, targets or [], bpe_vocab)
    if kind == "char":
        return CharVocab.train(texts)
    if kind == "bpe":
        return BpeVocab.train(texts, bpe_vocab)
    if kind == "g2p":
        return G2PVocab.train(texts, targets or [])
    raise UserError(f"unknown tokenizer {kind!r}; choose bpe, char or g2p")


def save_vocab(vocab: Vocab, run_dir: Path) -> Path:
    from rnnkit.io.confine import inside_run_dir

    return write_text_atomic(inside_run_dir(run_dir, TOKENIZER_FILE), vocab.to_json())


def load_vocab(run_dir: Path) -> Vocab:
    """The run's vocabulary; a damaged ``tokenizer.json`` is one line naming the file."""
    from rnnkit.io.saving import CorruptRunFile

    path = Path(run_dir) / TOKENIZER_FILE
    if not path.is_file():
        raise UserError(f"{path} not found: is {run_dir} a run directory of `rnnkit translate train`?")
    if path.stat().st_size > MAX_TOKENIZER_BYTES:
        raise CorruptRunFile(f"{path} is larger than {MAX_TOKENIZER_BYTES >> 20} MiB: not a tokenizer rnnkit wrote")
    try:
        text = path.read_bytes().decode("utf-8")
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptRunFile(f"{path} is damaged: {type(exc).__name__}") from None
    if isinstance(data, dict) and "rnnkit_translate_chars" in data:
        chars = data["rnnkit_translate_chars"]
        if (not isinstance(chars, list) or not all(isinstance(c, str) and len(c) == 1 for c in chars)
                or len(set(chars)) != len(chars)):
            raise CorruptRunFile(f"{path}: rnnkit_translate_chars must be a list of distinct characters")
        return CharVocab(chars)
    if isinstance(data, dict) and "rnnkit_translate_g2p" in data:
        tables = data["rnnkit_translate_g2p"]
        ok = isinstance(tables, dict) and all(isinstance(tables.get(k), list) for k in ("source", "target"))
        if not ok or not all(isinstance(c, str) and len(c) == 1 for c in tables["source"]) or not all(
                isinstance(p, str) and p and not any(ch.isspace() for ch in p) for p in tables["target"]) or (
                len(set(tables["source"])) != len(tables["source"]) or len(set(tables["target"])) != len(
                    tables["target"])):
            raise CorruptRunFile(f"{path}: rnnkit_translate_g2p must hold distinct source characters and distinct "
                                 "target symbols without spaces")
        return G2PVocab(tables["source"], tables["target"])
    if isinstance(data, dict) and "rnnkit_translate_bpe_separate" in data:
        sides = data["rnnkit_translate_bpe_separate"]
        if not (isinstance(sides, dict) and all(isinstance(sides.get(k), str) for k in ("source", "target"))):
            raise CorruptRunFile(f"{path}: rnnkit_translate_bpe_separate must hold a source and a target tokenizer")
        return SeparateBpeVocab(_bpe_tokenizer(sides["source"], path), _bpe_tokenizer(sides["target"], path))
    return BpeVocab(_bpe_tokenizer(text, path))


def _bpe_tokenizer(text: str, path: Path):
    """An HF tokenizer from its JSON, checked to hold the specials at ids 0-3; one line if damaged."""
    from tokenizers import Tokenizer

    from rnnkit.io.saving import CorruptRunFile

    try:
        tok = Tokenizer.from_str(text)
    except Exception:  # the library's parse errors: none of our formats
        raise CorruptRunFile(f"{path} is neither a character vocabulary nor a BPE tokenizer: damaged") from None
    if [tok.token_to_id(s) for s in SPECIALS] != [PAD, UNK, BOS, EOS]:
        raise CorruptRunFile(f"{path} does not hold rnnkit translate's special tokens at ids 0-3")
    return tok
