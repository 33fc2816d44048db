"""``rnnkit translate``: sequence-to-sequence translation with attention (docs/translate.md).

Modules: ``data`` (TSV pairs), ``tokenizer`` (joint BPE or characters), ``options`` (the task's
options), ``model`` (the registered Seq2Seq), ``task`` (training), ``decode`` (batched search over
sentences), ``metrics`` (sacrebleu), ``cli``.
"""
