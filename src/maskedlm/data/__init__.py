"""Text to masked batches: corpus -> tokenizer -> shards -> instances -> masking.

NumPy and the tokenizers library only: nothing here imports ``torch.nn``, the model,
the training loop or the recipes (an import contract in ``pyproject.toml``).
"""
