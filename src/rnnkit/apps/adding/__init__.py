"""The adding problem (Hochreiter & Schmidhuber 1997) as a training run: ``rnnkit train`` / ``rnnkit resume``."""
