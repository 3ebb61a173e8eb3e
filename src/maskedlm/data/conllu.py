"""Universal Dependencies CoNLL-U files: the words of each sentence with one column of tags.

The one CoNLL-U reader of the package: fine-tuning (``maskedlm.tasks.data.read_conllu``,
UPOS tagging) and the part-of-speech tagger of ``wsd predict``
(``maskedlm.embeddings.wsd.PosTagger.train``) both read through it.

>>> sents = read_conllu("ud_en_lines/en_lines-ud-dev.conllu")  # doctest: +SKIP
>>> sents[0].words[:2], sents[0].tags[:2], sents[0].line  # doctest: +SKIP
(['When', 'a'], ['SCONJ', 'DET'], 4)

Format: https://universaldependencies.org/format.html (10 tab-separated columns: ID,
FORM, LEMMA, UPOS, XPOS, FEATS, HEAD, DEPREL, DEPS, MISC; ``#`` comment lines; a blank
line ends a sentence).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from maskedlm.data.corpus import read_text_lines
from maskedlm.errors import MaskedLMError

COLUMNS = 10
UPOS = 3  # the column of the universal part-of-speech tag (0-based)


@dataclass
class ConlluSentence:
    """The words of one sentence, the tag of each (from the column read) and the line
    number of its first word."""

    words: list[str]
    tags: list[str]
    line: int


class ConlluColumnsError(MaskedLMError):
    """A word line without exactly 10 tab-separated columns; ``path``, ``line`` and
    ``columns`` let a caller word the message its own way."""

    def __init__(self, path: str | os.PathLike[str], line: int, columns: int) -> None:
        self.path, self.line, self.columns = path, line, columns
        super().__init__(f"{path}:{line}: malformed CoNLL-U line: {columns} columns, "
                         f"expected {COLUMNS}")


def read_conllu(path: str | os.PathLike[str], *, column: int = UPOS) -> list[ConlluSentence]:
    """The sentences of a CoNLL-U file with the tags of ``column`` (default UPOS); an empty
    list when there are none. Multiword token ranges (``3-4``) and empty nodes (``5.1``)
    are skipped: the words they span carry the tags.

    >>> read_conllu("ud_en_partut/en_partut-ud-train.conllu")[0].tags[:3]  # doctest: +SKIP
    ['NOUN', 'ADP', 'DET']
    """
    sentences: list[ConlluSentence] = []
    words: list[str] = []
    tags: list[str] = []
    start = 0
    for i, line in enumerate([*read_text_lines(path), ""], 1):
        if not line.strip():
            if words:
                sentences.append(ConlluSentence(words, tags, start))
            words, tags = [], []
            continue
        if line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) != COLUMNS:
            raise ConlluColumnsError(path, i, len(cols))
        if "-" in cols[0] or "." in cols[0]:
            continue  # multiword token range or empty node
        if not words:
            start = i
        words.append(cols[1])
        tags.append(cols[column])
    return sentences
