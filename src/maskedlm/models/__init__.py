"""The network: ``config`` (presets), ``bert`` (the encoder), ``kernels`` (its CPU fast
paths), ``heads`` (pretraining heads around the encoder) and ``losses``.

Nothing here imports the data pipeline, the training loop or the recipes.
"""
