"""Defaults of the data pipeline that its functions and :mod:`maskedlm.options` share.

Plain constants, no imports: ``maskedlm --help`` reads them through the options without
loading NumPy or ``tokenizers``.
"""

TEXT_FIELD = "text"  # the parquet column or JSON key holding a document's text
LANGUAGE_ALPHA = 0.3  # XLM-R's language sampling exponent (Conneau et al. 2020)
VOCAB_SIZE = 30000  # BERT's WordPiece vocabulary (Devlin et al. 2019)
PREVIEW_EXAMPLES = 3  # mask-preview: examples printed
PREVIEW_SEQUENCES = 200  # mask-preview --stats: sequences the statistics cover
TOKENIZER_SAMPLE_MB = 1000.0  # tokenizer train: MB of the corpus files sampled (on disk)
