"""Text generation (language modelling): ``rnnkit text train | evaluate | generate`` (docs/text.md).

``data.py`` (files -> documents -> deterministic split), ``tokenizer.py`` (characters or BPE),
``model.py`` (embedding -> Recurrent -> tied output; a causal Transformer baseline), ``task.py``
(TBPTT over stateful streams), ``metrics.py`` (cross-entropy, perplexity, bits per character),
``generate.py`` (sampling, streaming), ``cli.py``, ``api.py`` (:class:`TextModel`: the same from Python).
"""


def __getattr__(name: str):
    if name == "TextModel":  # imported on first use, as the CLI's modules are
        from .api import TextModel

        return TextModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
