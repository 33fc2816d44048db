"""Text generation (language modelling): ``rnnkit text train | evaluate | generate`` (docs/text.md).

``data.py`` (files -> documents -> deterministic split), ``tokenizer.py`` (characters or BPE),
``model.py`` (embedding -> Recurrent -> tied output; a causal Transformer baseline), ``task.py``
(TBPTT over stateful streams), ``metrics.py`` (cross-entropy, perplexity, bits per character),
``generate.py`` (sampling, streaming), ``cli.py``.
"""
