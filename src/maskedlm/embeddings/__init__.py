"""Uses of contextual embeddings: ``pooling`` (vectors, layers, standardization,
anisotropy), ``embed`` (a text file's vectors to ``.npy``), ``similarity`` (WiC, word
pairs), ``sts`` (sentence similarity), ``wsd`` (1-NN senses) and ``plots``.

They take any model with ``.model``, ``.tokenizer``, ``.device`` and ``.config``
(:class:`maskedlm.embeddings.pooling.Embedder`), such as ``maskedlm.load(path)``.
"""
