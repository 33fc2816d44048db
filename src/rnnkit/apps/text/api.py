"""The text app from Python: ``TextModel(**options).fit(files)``, ``.generate(prompt)``, ``.evaluate()``.

The same code path as ``rnnkit text train | generate | evaluate``, with the same defaults: options are
resolved exactly as the command resolves its flags (text defaults < ``config`` file < options), so a
model fitted here and one trained by the CLI on the same files with the same seed are the same
model. Options take the names of the config file and ``--set`` (``max_epochs``, ``hidden``, ``cell``,
``tokenizer``, ``bptt``, ...).

    from rnnkit.apps.text import TextModel

    model = TextModel(hidden=256, minutes=5, seed=0).fit(["books/"])     # files or folders
    model = TextModel(max_steps=200).fit(text="a string to learn from ...")
    print(model.generate("Once upon a time", max_tokens=200, temperature=0.8))
    model.evaluate()                       # cross-entropy, perplexity, bits per character (test split)
    model.save("runs/books"); TextModel.load("runs/books").generate()
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rnnkit.apps.run_model import RunDirModel
from rnnkit.errors import UserError
from rnnkit.io.atomic import write_text_atomic

#: the file ``fit(text=...)`` writes its text to, inside the run directory
TEXT_FILE = "data/fit.txt"


class TextModel(RunDirModel):
    """A recurrent (or Transformer) language model with the CLI's behaviour and defaults.

    ``options``: any option of ``rnnkit text train``'s config file (docs/text.md), e.g. ``cell``,
    ``hidden``, ``num_layers``, ``tokenizer``, ``bptt``, ``max_epochs``, ``max_steps``, ``minutes``,
    ``lr``, ``seed``, ``threads``; ``config``: a YAML file of options (the options given here win).
    """

    app = "text"
    options_class = "rnnkit.apps.text.task:TextConfig"

    def __init__(self, config: str | Path | None = None, **options: Any) -> None:
        super().__init__(config, **options)
        self.files: list[Path] | None = None  # the corpus fit() read, when the user named files

    def fit(self, files: str | Path | Sequence[str | Path] | None = None, *, text: str | None = None,
            run_dir: str | Path | None = None) -> TextModel:
        """Train on text files or folders (default: the CLI's, Python's documentation topics), or on
        the string ``text``, into ``run_dir`` (default: a new temporary folder). Returns ``self``."""
        from .cli import resolve_text_run
        from .task import run_text

        if files is not None and text is not None:
            raise UserError("give files or text=, not both")
        out = self.new_run_dir(run_dir)
        if text is not None:
            if not text:
                raise UserError("text= is empty")
            write_text_atomic(out / TEXT_FILE, text)
            paths = [out / TEXT_FILE]
        elif files is not None:
            paths = [Path(files)] if isinstance(files, (str, Path)) else [Path(f) for f in files]
            self.files = paths
        else:
            paths = None
        flags: dict[str, Any] = {"quiet": True, **self.options}
        if paths is not None:
            flags["files"] = [str(p) for p in paths]
        cfg, text_cfg = resolve_text_run(flags, self.config, None)
        run_text(cfg, text_cfg, out)
        self.run_dir = out
        return self

    def generate(self, prompt: str = "", max_tokens: int = 500, temperature: float = 0.8, top_k: int = 0,
                 top_p: float = 1.0, seed: int = 0, unknown: str = "error") -> str:
        """The continuation of ``prompt`` (without the prompt), sampled as ``rnnkit text generate`` samples
        it: same options, same defaults, same seed gives the same text."""
        from .cli import sample_run

        return "".join(sample_run(self.trained_run_dir(), prompt, max_tokens, temperature, top_k, top_p, seed,
                                  unknown, "generate()"))

    def evaluate(self, split: str = "test", file: str | Path | None = None, batch: int = 16) -> dict:
        """Cross-entropy (nats per token), perplexity and bits per character on a split of the training
        corpus or on the text file ``file``, as ``rnnkit text evaluate`` reports them."""
        from .cli import evaluate_run
        from .metrics import summary

        result = evaluate_run(self.trained_run_dir(), split, None if file is None else Path(file), batch,
                              self.files)
        return {**result, **summary(result["cross_entropy"], result["tokens_per_char"])}
