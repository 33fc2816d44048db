"""Applications: one package per app (data, model, task, metrics, cli), mounted by ``rnnkit``."""
