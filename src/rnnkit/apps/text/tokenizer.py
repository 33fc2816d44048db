"""Tokenisers: characters, or byte-level BPE trained on the corpus with HF ``tokenizers``.

Both are saved in the run directory as ``tokenizer.json`` (the char vocabulary as a JSON list, or
HF's own tokenizer file) and read back by :func:`load_tokenizer`.

Unknown characters (char level only; byte-level BPE encodes any text):

- corpus text of the validation/test splits (or ``evaluate --file``) outside the training
  vocabulary maps to ``<unk>`` (id 0), which is then scored like any other token;
- a generation prompt with such characters is an error naming them (``on_unknown="error"``), unless
  ``--unknown skip`` drops them (``on_unknown="skip"``).
"""

from __future__ import annotations

import json
from pathlib import Path

from rnnkit.errors import UserError
from rnnkit.io.atomic import write_text_atomic

TOKENIZER_FILE = "tokenizer.json"
UNK = "<unk>"
UNK_TEXT = "\ufffd"
MAX_TOKENIZER_BYTES = 64 << 20


class CharTokenizer:
    kind = "char"

    def __init__(self, chars: list[str]) -> None:
        self.chars = list(chars)  # id 0 is <unk>
        self.index = {c: i for i, c in enumerate(self.chars) if i > 0}

    @classmethod
    def train(cls, text: str) -> CharTokenizer:
        return cls([UNK, *sorted(set(text))])

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str, on_unknown: str = "unk") -> list[int]:
        if on_unknown == "unk":
            get = self.index.get
            return [get(c, 0) for c in text]
        missing = sorted({c for c in text if c not in self.index})
        if missing and on_unknown == "error":
            shown = ", ".join(repr(c) for c in missing[:10])
            raise UserError(f"the prompt has {len(missing)} character(s) outside the model's vocabulary: {shown}; "
                            "remove them or pass --unknown skip to drop them")
        return [self.index[c] for c in text if c in self.index]

    def decode(self, ids: list[int]) -> str:
        return "".join(UNK_TEXT if i == 0 else self.chars[i] for i in ids)

    def to_json(self) -> str:
        return json.dumps({"rnnkit_char_tokenizer": self.chars}, ensure_ascii=False)


class BpeTokenizer:
    kind = "bpe"

    def __init__(self, tok) -> None:
        self.tok = tok

    @classmethod
    def train(cls, texts: list[str], vocab_size: int = 1024) -> BpeTokenizer:
        from rnnkit.apps.bpe import train_byte_level_bpe

        tok = train_byte_level_bpe(texts, vocab_size, [UNK], add_prefix_space=False)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    def encode(self, text: str, on_unknown: str = "unk") -> list[int]:
        return self.tok.encode(text).ids  # byte level: every text is encodable

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids)

    def to_json(self) -> str:
        return self.tok.to_str()


def save_tokenizer(tok: CharTokenizer | BpeTokenizer, run_dir: Path) -> Path:
    return write_text_atomic(Path(run_dir) / TOKENIZER_FILE, tok.to_json())


def load_tokenizer(run_dir: Path) -> CharTokenizer | BpeTokenizer:
    """The run's tokenizer; any damage to ``tokenizer.json`` is one line naming the file."""
    from rnnkit.io.saving import CorruptRunFile

    path = Path(run_dir) / TOKENIZER_FILE
    if not path.is_file():
        raise UserError(f"{path} not found: is {run_dir} a run directory of `rnnkit text train`?")
    if path.stat().st_size > MAX_TOKENIZER_BYTES:  # read whole: a crafted file must not take the memory
        raise CorruptRunFile(f"{path} is larger than {MAX_TOKENIZER_BYTES >> 20} MiB: not a tokenizer rnnkit wrote")
    try:
        text = path.read_bytes().decode("utf-8")
        data = json.loads(text)
    except UnicodeDecodeError:
        raise CorruptRunFile(f"{path} is not UTF-8 text: the file is damaged") from None
    except json.JSONDecodeError as exc:
        raise CorruptRunFile(f"{path} is damaged: {exc}") from None
    if isinstance(data, dict) and "rnnkit_char_tokenizer" in data:
        chars = data["rnnkit_char_tokenizer"]
        if (not isinstance(chars, list) or len(chars) < 1 or chars[0] != UNK
                or not all(isinstance(c, str) and len(c) == 1 for c in chars[1:]) or len(set(chars)) != len(chars)):
            raise CorruptRunFile(f"{path}: rnnkit_char_tokenizer must be a list of distinct single characters "
                                 f"after {UNK!r}: the file is damaged")
        return CharTokenizer(chars)
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise UserError("this run uses a BPE tokenizer: install HF tokenizers (pip install tokenizers)") from None
    try:
        return BpeTokenizer(Tokenizer.from_str(text))
    except Exception:  # the library's parse errors: the file is neither of our two formats
        raise CorruptRunFile(f"{path} is neither a character vocabulary nor a BPE tokenizer: the file is "
                             "damaged") from None


def build_tokenizer(kind: str, train_docs: list[str], vocab_size: int) -> CharTokenizer | BpeTokenizer:
    if kind == "char":
        return CharTokenizer.train("\n".join(train_docs))
    if kind == "bpe":
        try:
            import tokenizers  # noqa: F401
        except ImportError:
            raise UserError("--tokenizer bpe needs HF tokenizers: pip install tokenizers") from None
        return BpeTokenizer.train(train_docs, vocab_size)
    raise UserError(f"unknown tokenizer {kind!r}; choose char or bpe")
