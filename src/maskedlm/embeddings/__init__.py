"""Uses of contextual embeddings: ``pooling`` (vectors, layers, standardization,
anisotropy), ``similarity`` (WiC, word pairs), ``wsd`` (1-NN senses) and ``plots``.

They take any model with ``.model``, ``.tokenizer``, ``.device`` and ``.config``
(:class:`maskedlm.embeddings.pooling.Embedder`), such as ``maskedlm.load(path)``.
"""
