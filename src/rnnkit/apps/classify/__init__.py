"""Sequence classification: ``rnnkit classify train | evaluate | predict`` (docs/classify.md).

``cases.py`` (the in-memory data set: one array per case, labels, splits), ``long_csv.py`` and
``ts_format.py`` (the two file formats), ``data.py`` (choosing the reader, checks between files,
padding), ``split.py`` (the stratified validation split), ``pooling.py``, ``conv.py`` (the FCN block
of LSTM-FCN / MLSTM-FCN), ``model.py`` (one classifier for every architecture), ``task.py`` (the
LightningModule), ``metrics.py``, ``dtw.py`` (the 1-NN DTW baseline), ``plots.py``, ``pipeline.py``
(train / evaluate / predict), ``synthetic.py`` (the example set), ``cli.py``, ``api.py``
(:class:`ClassifyModel`: the same from Python).
"""


def __getattr__(name: str):
    if name == "ClassifyModel":  # imported on first use: the CLI's start does not pay for pandas
        from .api import ClassifyModel

        return ClassifyModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
