"""``rnnkit translate``: sequence-to-sequence translation with attention (docs/translate.md).

Modules: ``data`` (TSV pairs), ``tokenizer`` (joint BPE or characters), ``options`` (the task's
options), ``model`` (the registered Seq2Seq), ``task`` (training), ``decode`` (batched search over
sentences), ``metrics`` (sacrebleu), ``cli``, ``api`` (:class:`TranslateModel`: the same from Python).
"""


def __getattr__(name: str):
    if name == "TranslateModel":  # imported on first use, as the CLI imports its pieces
        from .api import TranslateModel

        return TranslateModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
