"""WordPiece tokenizers: train, save, load (ours or Hugging Face's), encode.

A thin wrapper over Hugging Face ``tokenizers`` with the BERT pipeline: BERT normalizer
(lower-casing and accent stripping for uncased models), BERT pre-tokenizer (whitespace
and punctuation), WordPiece with the ``##`` continuation prefix (Devlin et al. 2019;
Wu et al. 2016). A *word* is one pre-tokenized piece, the unit of whole-word masking.

Trained tokenizers put the special tokens first: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3,
[MASK]=4. Loaded Hugging Face vocabularies keep their own ids, looked up by name.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

from maskedlm.data.defaults import VOCAB_SIZE
from maskedlm.errors import MaskedLMError
from maskedlm.files import atomic_write_text

SPECIAL_TOKENS = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
TOKENIZER_FILE = "tokenizer.json"
VOCAB_FILE = "vocab.txt"
CONFIG_FILE = "tokenizer_config.json"


class Tokenizer:
    """A WordPiece tokenizer with named special ids.

    >>> tok = Tokenizer.load("runs/bert-tiny")  # doctest: +SKIP
    >>> tok.encode("Hello world")["input_ids"]  # doctest: +SKIP
    array([   2, 1234,  567,    3])
    """

    def __init__(
        self, hf: HFTokenizer, *, lowercase: bool, special: dict[str, str] | None = None
    ) -> None:
        hf.no_padding()  # HF files may pad/truncate (all-MiniLM-L6-v2 pads to 128)
        hf.no_truncation()
        self._hf = hf
        self.lowercase = lowercase
        self.special_tokens = dict(special or SPECIAL_TOKENS)
        ids: dict[str, int] = {}
        for role, token in self.special_tokens.items():
            tid = hf.token_to_id(token)
            if tid is None:
                raise MaskedLMError(f"tokenizer: vocabulary lacks the {role} token {token!r}")
            ids[role] = tid
        self.pad_id, self.unk_id = ids["pad"], ids["unk"]
        self.cls_id, self.sep_id, self.mask_id = ids["cls"], ids["sep"], ids["mask"]
        self.special_ids: frozenset[int] = frozenset(ids.values())
        self.vocab_size: int = hf.get_vocab_size(with_added_tokens=True)
        self._continuation: np.ndarray | None = _continuation_table(hf, self.vocab_size)

    @property
    def hf(self) -> HFTokenizer:
        """The underlying ``tokenizers.Tokenizer`` (padding and truncation disabled)."""
        return self._hf

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, lowercase={self.lowercase})"

    # ------------------------------------------------------------------ encoding

    def encode_words(self, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per text: (ids int64, word_starts bool), without special tokens.

        A word start is the first sub-word of a pre-tokenized word, so "unaffable" ->
        ``una ##ffa ##ble`` has starts ``[True, False, False]``.

        >>> ids, starts = tok.encode_words(["unaffable"])[0]  # doctest: +SKIP
        """
        ids, starts, lengths = self.encode_flat(texts)
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        return [(ids[a:b], starts[a:b]) for a, b in itertools.pairwise(bounds)]

    def encode_flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Batch-encode and concatenate: (ids int64, word_starts bool, lengths int64).

        The fast path for data preparation (one array per batch, not per text). With
        BERT's pre-tokenizer and WordPiece a piece continues a word exactly when it carries
        the ``##`` prefix, so word starts come from a vocabulary table instead of
        per-token ``word_ids`` (a fifth of the encoding time).
        """
        if self._continuation is not None:
            fast = getattr(self._hf, "encode_batch_fast", self._hf.encode_batch)
            encodings = fast(list(texts), add_special_tokens=False)
            lengths = np.fromiter((len(e.ids) for e in encodings), np.int64, len(encodings))
            n = int(lengths.sum())
            ids = np.fromiter(itertools.chain.from_iterable(e.ids for e in encodings),
                              dtype=np.int64, count=n)
            starts = ~self._continuation[ids]
            starts[(np.cumsum(lengths) - lengths)[lengths > 0]] = True
            return ids, starts, lengths
        encodings = self._hf.encode_batch(list(texts), add_special_tokens=False)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        n = int(lengths.sum())
        ids = np.fromiter(
            itertools.chain.from_iterable(e.ids for e in encodings), dtype=np.int64, count=n
        )
        # None (an added token in the text) never equals a neighbour, so it starts a word
        words = np.fromiter(
            (-1 if w is None else w for e in encodings for w in e.word_ids),
            dtype=np.int64,
            count=n,
        )
        starts = np.ones(n, dtype=bool)
        if n:
            starts[1:] = (words[1:] != words[:-1]) | (words[1:] < 0)
            first = np.cumsum(lengths) - lengths
            starts[first[lengths > 0]] = True
        return ids, starts, lengths

    def encode(
        self, text: str, pair: str | None = None, max_length: int | None = None
    ) -> dict[str, np.ndarray]:
        """``[CLS] A [SEP] (B [SEP])`` as arrays: input_ids, token_type_ids, word_ids.

        ``word_ids`` number the words of A then B consecutively, -1 on special tokens.
        With ``max_length`` the longer segment is cut from its end until the pair fits.

        >>> tok.encode("a question", "a context", max_length=16)["token_type_ids"]  # doctest: +SKIP
        """
        a = self._hf.encode(text, add_special_tokens=False)
        b = self._hf.encode(pair, add_special_tokens=False) if pair is not None else None
        la, lb = len(a.ids), len(b.ids) if b is not None else 0
        if max_length is not None:
            room = max_length - (3 if b is not None else 2)
            if room < (2 if b is not None else 1):
                raise MaskedLMError(f"max_length: {max_length} leaves no room for text")
            while la + lb > room:  # longest-first, as HF's "longest_first" truncation
                if la >= lb:
                    la -= 1
                else:
                    lb -= 1
        wa = np.array([-1 if w is None else w for w in a.word_ids[:la]], dtype=np.int64)
        ids = [self.cls_id, *a.ids[:la], self.sep_id]
        types = [0] * (la + 2)
        words = [-1, *wa.tolist(), -1]
        if b is not None:
            offset = int(wa.max()) + 1 if la else 0
            ids += [*b.ids[:lb], self.sep_id]
            types += [1] * (lb + 1)
            words += [-1 if w is None else w + offset for w in b.word_ids[:lb]] + [-1]
        return {
            "input_ids": np.array(ids, dtype=np.int64),
            "token_type_ids": np.array(types, dtype=np.int64),
            "word_ids": np.array(words, dtype=np.int64),
        }

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        """Ids back to text (WordPiece ``##`` pieces joined).

        >>> tok.decode(tok.encode("hello world")["input_ids"])  # doctest: +SKIP
        'hello world'
        """
        return self._hf.decode([int(i) for i in ids], skip_special_tokens=skip_special)

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        """Token strings of ``ids`` ("[UNK]"'s string for an id outside the vocabulary)."""
        unk = self.special_tokens["unk"]
        return [self._hf.id_to_token(int(i)) or unk for i in ids]

    def token_to_id(self, token: str) -> int | None:
        """Id of ``token``, or None when it is not in the vocabulary."""
        return self._hf.token_to_id(token)

    def vocab(self) -> list[str]:
        """Tokens in id order."""
        return [self._hf.id_to_token(i) or "" for i in range(self.vocab_size)]

    def fingerprint(self) -> str:
        """Stable hash of the tokenizer (its JSON, padding/truncation disabled)."""
        return hashlib.sha256(self._hf.to_str().encode("utf-8")).hexdigest()[:16]

    # -------------------------------------------------------------- save / load

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write tokenizer.json, vocab.txt and tokenizer_config.json (BertTokenizer-compatible).

        Each file is written to a temporary name and renamed into place.

        >>> tok.save("runs/bert-tiny")  # doctest: +SKIP
        """
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        config = {
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": self.lowercase,
            "strip_accents": None,  # None: follow do_lower_case, as BERT
            "tokenize_chinese_chars": True,
            **{f"{role}_token": tok for role, tok in self.special_tokens.items()},
        }
        atomic_write_text(d / TOKENIZER_FILE, self._hf.to_str(pretty=True))
        atomic_write_text(d / VOCAB_FILE, "".join(f"{t}\n" for t in self.vocab()))
        atomic_write_text(d / CONFIG_FILE, json.dumps(config, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Tokenizer:
        """Load our directory, a Hugging Face directory, a tokenizer.json or a vocab.txt.

        Prefers tokenizer.json; falls back to vocab.txt with ``do_lower_case`` from
        tokenizer_config.json (default True, as HF's BertTokenizer).

        >>> Tokenizer.load("sentence-transformers/all-MiniLM-L6-v2/")  # doctest: +SKIP
        """
        p = Path(path)
        if p.is_dir():
            config_path = p / CONFIG_FILE
            file = p / TOKENIZER_FILE if (p / TOKENIZER_FILE).is_file() else p / VOCAB_FILE
            if not file.is_file():
                raise MaskedLMError(f"{p}: holds neither {TOKENIZER_FILE} nor {VOCAB_FILE}")
        elif p.is_file():
            file, config_path = p, p.with_name(CONFIG_FILE)
        else:
            raise MaskedLMError(f"{p}: no such tokenizer file or directory")
        config = _read_config(config_path)
        special = _special_from_config(config)
        if file.suffix == ".json":
            try:
                hf = HFTokenizer.from_file(str(file))
            except Exception as e:  # tokenizers raises a bare Exception on bad JSON
                raise MaskedLMError(
                    f"{file}: not a valid tokenizer.json ({_first_line(e)})"
                ) from None
            lowercase = _normalizer_lowercases(json.loads(hf.to_str()).get("normalizer"))
        else:
            lowercase = bool(config.get("do_lower_case", True))
            hf = _from_vocab_file(file, lowercase, special)
        try:
            return cls(hf, lowercase=lowercase, special=special)
        except MaskedLMError as e:
            raise MaskedLMError(f"{file}: {e}") from None


def _continuation_table(hf: HFTokenizer, vocab_size: int) -> np.ndarray | None:
    """Bool (vocab_size,): True for the pieces that continue a word (``##ing``), when the
    pipeline is BERT's pre-tokenizer with WordPiece; None for any other pipeline.

    Punctuation is a word of its own under BertPreTokenizer, so no word can begin with the
    prefix: a prefixed piece never starts a word and an unprefixed one always does."""
    config = json.loads(hf.to_str())
    model, pre = config.get("model") or {}, config.get("pre_tokenizer") or {}
    if model.get("type") != "WordPiece" or pre.get("type") != "BertPreTokenizer":
        return None
    prefix = model.get("continuing_subword_prefix") or "##"
    table = np.zeros(vocab_size, dtype=bool)
    for token, i in hf.get_vocab(with_added_tokens=True).items():
        if token.startswith(prefix) and len(token) > len(prefix) and i < vocab_size:
            table[i] = True
    return table


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MaskedLMError(f"{path}: not valid JSON ({_first_line(e)})") from None
    if not isinstance(config, dict):
        raise MaskedLMError(f"{path}: expected a JSON object")
    return config


def _special_from_config(config: dict[str, Any]) -> dict[str, str]:
    special = dict(SPECIAL_TOKENS)
    for role in special:
        value = config.get(f"{role}_token")
        if isinstance(value, dict):  # AddedToken serialized as {"content": ...}
            value = value.get("content")
        if isinstance(value, str):
            special[role] = value
    return special


def _normalizer_lowercases(normalizer: dict[str, Any] | None) -> bool:
    if not normalizer:
        return False
    kind = normalizer.get("type")
    if kind == "BertNormalizer":
        return bool(normalizer.get("lowercase"))
    if kind == "Lowercase":
        return True
    if kind == "Sequence":
        return any(_normalizer_lowercases(n) for n in normalizer.get("normalizers", []))
    return False


def _bert_pipeline(hf: HFTokenizer, lowercase: bool, special: dict[str, str]) -> HFTokenizer:
    """Attach BERT's normalizer, pre-tokenizer, decoder and [CLS]/[SEP] template."""
    # strip_accents=None follows lowercase, as in BERT's uncased models
    hf.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    hf.decoder = decoders.WordPiece(prefix="##")
    cls, sep = special["cls"], special["sep"]
    if hf.token_to_id(cls) is not None and hf.token_to_id(sep) is not None:
        hf.post_processor = processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0",
            pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(cls, hf.token_to_id(cls)), (sep, hf.token_to_id(sep))],
        )
    return hf


def _from_vocab_file(path: Path, lowercase: bool, special: dict[str, str]) -> HFTokenizer:
    vocab: dict[str, int] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f):
                token = line.rstrip("\r\n")
                if token in vocab:
                    raise MaskedLMError(f"{path}:{i + 1}: duplicate token {token!r}")
                vocab[token] = i
    except UnicodeDecodeError:
        raise MaskedLMError(f"{path}: not UTF-8") from None
    if special["unk"] not in vocab:
        raise MaskedLMError(f"{path}: vocabulary lacks the unk token {special['unk']!r}")
    return _wordpiece(vocab, lowercase, special)


def _wordpiece(vocab: dict[str, int], lowercase: bool, special: dict[str, str]) -> HFTokenizer:
    hf = HFTokenizer(
        models.WordPiece(
            vocab,
            unk_token=special["unk"],
            continuing_subword_prefix="##",
            max_input_chars_per_word=100,
        )
    )
    hf.add_special_tokens([t for t in special.values() if t in vocab])  # keeps their ids
    return _bert_pipeline(hf, lowercase, special)


def canonical_ids(trained: dict[str, int], special: dict[str, str]) -> dict[str, int]:
    """Number a trained vocabulary so that the same set always gets the same ids.

    The WordPiece trainer orders merges of equal count by hash-map iteration, so two runs
    on the same corpus give the same tokens under different ids (and so different
    models from one seed). Special tokens keep ids 0..4; the single characters (the
    alphabet) follow, then the merged pieces by length, each group in code-point order.
    Greedy longest-match WordPiece does not depend on the ids, so encoding is unchanged.
    """
    specials = list(special.values())
    rest = [t for t in trained if t not in special.values()]

    def key(token: str) -> tuple[int, str]:
        return len(token.removeprefix("##")), token

    return {t: i for i, t in enumerate(specials + sorted(rest, key=key))}


def _iter_sentences(documents: Iterable[list[str]], batch: int = 1000) -> Iterator[list[str]]:
    buffer: list[str] = []
    for doc in documents:
        buffer.extend(doc)
        if len(buffer) >= batch:
            yield buffer
            buffer = []
    if buffer:
        yield buffer


LIMIT_ALPHABET = 1000  # as Hugging Face's BertWordPieceTokenizer


def train_tokenizer(
    documents: Iterable[list[str]] | Callable[[], Iterable[list[str]]],
    *,
    vocab_size: int = VOCAB_SIZE,
    lowercase: bool = False,
    min_frequency: int = 2,
    show_progress: bool = True,
) -> Tokenizer:
    """Train a WordPiece vocabulary on documents (lists of sentences).

    30,000 is BERT's vocabulary size (Devlin et al. 2019); the alphabet is limited to the
    1,000 most frequent characters, as Hugging Face's BertWordPieceTokenizer.

    The same corpus and ``vocab_size`` give the same vocabulary in every run. The
    ``tokenizers`` trainer breaks ties between equally frequent merges by token id, and
    numbers the continuation pieces (``##a``) in hash-map order, so on its own the set of
    pieces that make the cut changes from run to run. Here a first, cheap pass (no merges)
    finds those continuation pieces and the second pass is given them in sorted order up
    front, which fixes every id the tie-breaking sees. Not covered: a corpus with more
    than 1,000 distinct characters whose 1,000th most frequent characters tie, where the
    trainer's alphabet cut itself is unordered. Training reads ``documents`` twice: pass a
    function returning a fresh iterable to stream a large corpus (a one-shot iterator is
    held in memory).

    >>> tok = train_tokenizer(lambda: iter_documents(["corpus.txt"]), vocab_size=8000)  # doctest: +SKIP
    """
    if vocab_size < len(SPECIAL_TOKENS) + 1:
        raise MaskedLMError(f"--vocab-size must exceed {len(SPECIAL_TOKENS)}, got {vocab_size}")
    if callable(documents):
        stream = documents
    else:
        held = documents if isinstance(documents, Sequence) else list(documents)
        stream = lambda: held  # noqa: E731
    special = dict(SPECIAL_TOKENS)
    # pass 1: the alphabet and its continuation pieces only (the trainer stops before merging)
    alphabet = _train(stream(), special, [], 1, lowercase, min_frequency, show_progress)
    pieces = sorted(t for t in alphabet.get_vocab() if t.startswith("##"))
    hf = _train(stream(), special, pieces, vocab_size, lowercase, min_frequency, show_progress)
    if hf.get_vocab_size() <= len(special):
        raise MaskedLMError("corpus: too little text to train a tokenizer")
    hf = _wordpiece(canonical_ids(hf.get_vocab(), special), lowercase, special)
    return Tokenizer(hf, lowercase=lowercase, special=special)


def _train(documents: Iterable[list[str]], special: dict[str, str], first: list[str],
           vocab_size: int, lowercase: bool, min_frequency: int,
           show_progress: bool) -> HFTokenizer:
    """One run of the WordPiece trainer; ``first`` tokens get the ids after the specials."""
    hf = HFTokenizer(models.WordPiece(unk_token=special["unk"], continuing_subword_prefix="##"))
    _bert_pipeline(hf, lowercase, special)
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        show_progress=show_progress,
        special_tokens=[*special.values(), *first],  # ids 0..4 in this order, then `first`
        limit_alphabet=LIMIT_ALPHABET,
        continuing_subword_prefix="##",
    )
    hf.train_from_iterator(_iter_sentences(documents), trainer=trainer)
    return hf
