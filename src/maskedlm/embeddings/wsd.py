"""Word sense disambiguation by 1-nearest-neighbour over sense centroids.

>>> from maskedlm.embeddings.wsd import WordNetInventory, read_semcor, train_centroids
>>> wn = WordNetInventory("data/wordnet/dict")  # doctest: +SKIP
>>> sentences, stats = read_semcor("semcor3.0.jsonl.gz", wn)  # doctest: +SKIP
>>> centroids = train_centroids(model, sentences)  # doctest: +SKIP

The method (Peters et al. 2018, sec. 5.3; Loureiro & Jorge 2019, "LMMS"): a sense's
vector is the mean contextual vector of the SemCor tokens tagged with it; a test token
gets, among the WordNet 3.0 senses of its lemma and POS, the sense whose vector has the
highest cosine. Lemmas with no trained sense fall back to the most frequent sense,
WordNet's first sense (its senses are ordered by SemCor tag counts, ``cntlist``).
Test data and keys follow Raganato, Camacho-Collados & Navigli (2017); a prediction
is right when it is one of the gold keys.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import time
import warnings
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from maskedlm.data.conllu import ConlluColumnsError, read_conllu
from maskedlm.data.corpus import read_text_lines
from maskedlm.embeddings.pooling import Standardizer, iter_word_vectors, tokenize
from maskedlm.errors import MaskedLMError
from maskedlm.options import VectorOptions, WsdTrainOptions

if TYPE_CHECKING:
    from maskedlm.embeddings.pooling import Embedder

UPOS_TO_WN = {"NOUN": "n", "VERB": "v", "ADJ": "a", "ADV": "r"}
SS_TYPE_TO_POS = {"1": "n", "2": "v", "3": "a", "4": "r", "5": "a"}  # 5: adjective satellite
# closed-class words are never disambiguated by `predict` ("He" is not helium)
STOPWORDS = frozenset(
    "a an the this that these those he she it they we you i me him her us them his its their our "
    "your my mine of in on at by for with from to into onto over under about as and or but nor if "
    "then than so be is are was were been being am do does did have has had will would shall "
    "should can could may might must not no there here who whom which what when where why how".split())


# ----------------------------------------------------------------------------- inventory
class SenseInventory(Protocol):
    """Candidate senses of a lemma and POS (n, v, a, r), most frequent first."""

    def candidates(self, lemma: str, pos: str) -> list[str]: ...

    def is_known(self, key: str) -> bool: ...

    def analyses(self, word: str) -> list[tuple[str, str]]: ...

    def definition(self, key: str) -> str: ...

    def synset_name(self, key: str) -> str: ...


def short_gloss(text: str, width: int = 40) -> str:
    """``text`` cut at a word boundary to at most ``width`` characters, with an ellipsis.

    >>> short_gloss("pass from physical life and lose all bodily attributes and functions", 30)
    'pass from physical life and…'
    """
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    cut = text[:width - 1].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + "…"


def sense_label(inventory: SenseInventory, key: str, width: int = 40) -> str:
    """A reader's name for a sense: ``die.v.01: pass from physical life…`` (the WordNet
    synset and a short gloss, as Jurafsky & Martin label Fig. 11.7), not the raw key.

    >>> sense_label(DictInventory({}, {"die%2:39:00::": "pass from physical life"}), "die%2:39:00::")
    'die%2:39:00::: pass from physical life'
    """
    gloss = short_gloss(inventory.definition(key), width)
    name = inventory.synset_name(key) or key
    return f"{name}: {gloss}" if gloss else name


def normalize_lemma(lemma: str) -> str:
    return lemma.strip().lower().replace(" ", "_")


@dataclass
class DictInventory:
    """A sense inventory from a mapping ``{(lemma, pos): [keys, MFS first]}`` (tests, toys)."""

    senses: Mapping[tuple[str, str], Sequence[str]]
    glosses: Mapping[str, str] = field(default_factory=dict)

    def candidates(self, lemma: str, pos: str) -> list[str]:
        return list(self.senses.get((normalize_lemma(lemma), pos), []))

    def is_known(self, key: str) -> bool:
        return any(key in keys for keys in self.senses.values())

    def analyses(self, word: str) -> list[tuple[str, str]]:
        w = normalize_lemma(word)
        return [(lemma, pos) for lemma, pos in self.senses if lemma == w]

    def definition(self, key: str) -> str:
        return self.glosses.get(key, "")

    def synset_name(self, key: str) -> str:
        return ""  # no synsets here: labels fall back to the key


class WordNetInventory:
    """WordNet 3.0 read from its ``dict/`` files by NLTK's ``WordNetCorpusReader``."""

    def __init__(self, dict_dir: str | os.PathLike[str]) -> None:
        self.path = Path(dict_dir)
        if not (self.path / "index.sense").is_file() or not (self.path / "data.noun").is_file():
            raise MaskedLMError(f"{self.path}: not a WordNet dict/ folder (no index.sense, data.noun)")
        self.wn = _open_wordnet(self.path)
        self._cache: dict[tuple[str, str], list[str]] = {}
        self._keys: dict[str, str] | None = None

    def candidates(self, lemma: str, pos: str) -> list[str]:
        k = (normalize_lemma(lemma), pos)
        if k not in self._cache:
            self._cache[k] = [lem.key() for lem in self.wn.lemmas(k[0], pos)]
        return self._cache[k]

    def is_known(self, key: str) -> bool:
        return key in self._key_map()

    def _key_map(self) -> dict[str, str]:
        if self._keys is None:
            self._keys = self.wn.index_sense()  # NLTK's reader of index.sense: key -> "offset-pos"
        return self._keys

    def analyses(self, word: str) -> list[tuple[str, str]]:
        out = []
        w = normalize_lemma(word)
        for pos in "nvar":
            # every base form (``banks`` is a noun itself and the plural of ``bank``);
            # the public ``morphy`` returns only the first one
            bases = self.wn._morphy(w, pos) if hasattr(self.wn, "_morphy") else [self.wn.morphy(w, pos)]
            out += [(b, pos) for b in dict.fromkeys(bases) if b and self.candidates(b, pos)]
        return out

    def _synset(self, key: str) -> Any:
        # via index.sense, not lemma_from_key, which leaves a file handle open
        found = self._key_map().get(key)
        if found is None:
            return None
        offset, pos = found.split("-")
        return self.wn.synset_from_pos_and_offset(pos, int(offset))

    def definition(self, key: str) -> str:
        synset = self._synset(key)
        return "" if synset is None else str(synset.definition())

    def synset_name(self, key: str) -> str:
        """``die.v.01`` for ``die%2:30:00::``; empty for a key WordNet does not have."""
        synset = self._synset(key)
        return "" if synset is None else str(synset.name())


def _open_wordnet(path: Path) -> Any:
    try:
        import nltk.data
        from nltk.corpus.reader.wordnet import WordNetCorpusReader
    except ImportError:
        raise MaskedLMError("WordNet: needs NLTK (pip install 'maskedlm[wsd]')") from None

    class WordNet30(WordNetCorpusReader):
        def map_wn(self, version: str = "wordnet") -> None:
            return None  # no Open Multilingual Wordnet mapping: this *is* WordNet 3.0

    root = str(path.resolve())
    if root not in nltk.data.path:  # NLTK only reads paths its data path authorizes
        nltk.data.path.append(root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available"
        try:
            return WordNet30(root, None)
        except (OSError, ValueError, AssertionError) as e:
            raise MaskedLMError(f"{path}: cannot read WordNet ({type(e).__name__}: {e})") from None


# ----------------------------------------------------------------------------- words and POS
TAGGER_FILE = "pos_tagger.json"
# Universal POS -> WordNet POS for `predict`; proper nouns try WordNet's nouns ("Paris")
PREDICT_POS = {**UPOS_TO_WN, "PROPN": "n"}


def word_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the words of untokenized ``text``: NLTK's Punkt
    sentence splitter, then its Treebank-style word tokenizer (``nltk.word_tokenize``'s
    two steps) on each sentence, so "bank," and "river." give "bank" "," and "river" ".".

    Punkt runs with its default parameters, not the ``punkt_tab`` model (NLTK data that
    is often not installed): it knows no abbreviations, so "Dr." ends a sentence there;
    the words come out the same but for such a period.

    >>> t = "He sat on the bank, by the river."
    >>> [t[a:b] for a, b in word_spans(t)]
    ['He', 'sat', 'on', 'the', 'bank', ',', 'by', 'the', 'river', '.']
    """
    try:
        from nltk.tokenize import NLTKWordTokenizer
        from nltk.tokenize.punkt import PunktSentenceTokenizer
    except ImportError:
        raise MaskedLMError("wsd predict: needs NLTK (pip install 'maskedlm[wsd]')") from None
    words = NLTKWordTokenizer()
    return [(a + x, a + y) for a, b in PunktSentenceTokenizer().span_tokenize(text)
            for x, y in words.span_tokenize(text[a:b])]


def read_conllu_tags(path: str | os.PathLike[str]) -> list[list[tuple[str, str]]]:
    """(word, UPOS) sentences of a Universal Dependencies CoNLL-U file (multi-word token
    lines and empty nodes are skipped: their parts carry the tags), as NLTK's taggers
    train on them; read by :func:`maskedlm.data.conllu.read_conllu`.

    >>> read_conllu_tags("en_partut-ud-train.conllu")[0][:2]  # doctest: +SKIP
    [('Distribution', 'NOUN'), ('of', 'ADP')]
    """
    try:
        sentences = read_conllu(path)
    except ConlluColumnsError as e:
        raise MaskedLMError(f"{e.path}:{e.line}: {e.columns} columns, CoNLL-U has 10") from None
    if not sentences:
        raise MaskedLMError(f"{path}: no sentences")
    return [list(zip(s.words, s.tags, strict=True)) for s in sentences]


class PosTagger:
    """Universal POS tags for words: NLTK's averaged perceptron tagger (Collins 2002; the
    model behind ``nltk.pos_tag``), trained here on UD English treebanks, because NLTK's
    pretrained ``averaged_perceptron_tagger_eng`` is data that is rarely installed and
    cannot be fetched offline.

    >>> tagger = PosTagger.train(["en_lines-ud-train.conllu"])  # doctest: +SKIP
    >>> tagger.tag(["He", "sat", "on", "the", "bank", "."])  # doctest: +SKIP
    ['PRON', 'VERB', 'ADP', 'DET', 'NOUN', 'PUNCT']
    """

    def __init__(self, tagger: Any, info: dict[str, Any] | None = None) -> None:
        self.tagger = tagger
        self.info = info or {}

    @classmethod
    def train(cls, conllu: Sequence[str | os.PathLike[str]], iterations: int = 5,
              seed: int = 0) -> PosTagger:
        """Train on CoNLL-U files; 5 passes, NLTK's default."""
        try:
            from nltk.tag.perceptron import PerceptronTagger
        except ImportError:
            raise MaskedLMError("--pos-train: needs NLTK (pip install 'maskedlm[wsd]')") from None
        sentences = [s for path in conllu for s in read_conllu_tags(path)]
        tagger = PerceptronTagger(load=False)
        state = random.getstate()  # NLTK shuffles with the module-level generator
        random.seed(seed)
        try:
            tagger.train(sentences, nr_iter=iterations)
        finally:
            random.setstate(state)
        return cls(tagger, {"train": [str(Path(p).resolve()) for p in conllu], "seed": seed,
                            "sentences": len(sentences), "iterations": iterations,
                            "words": sum(len(s) for s in sentences)})

    def tag(self, words: Sequence[str]) -> list[str]:
        return [t for _, t in self.tagger.tag(list(words))] if words else []

    def to_json(self) -> str:
        weights, tagdict, classes = self.tagger.encode_json_obj()
        return json.dumps({"info": self.info, "weights": weights, "tagdict": tagdict,
                           "classes": sorted(classes)})

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PosTagger:
        try:
            from nltk.tag.perceptron import PerceptronTagger
        except ImportError:
            raise MaskedLMError(f"{path}: needs NLTK (pip install 'maskedlm[wsd]')") from None
        try:
            d = json.loads(Path(path).read_text())
            tagger = PerceptronTagger.decode_json_obj((d["weights"], d["tagdict"], d["classes"]))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise MaskedLMError(f"{path}: not a part-of-speech tagger ({type(e).__name__})") from None
        return cls(tagger, d.get("info"))


# ----------------------------------------------------------------------------- data
@dataclass
class Target:
    index: int  # word position in the sentence
    lemma: str
    pos: str  # n, v, a, r ("" when unknown)
    keys: list[str] = field(default_factory=list)
    id: str = ""


@dataclass
class TaggedSentence:
    words: list[str]
    targets: list[Target]


def read_semcor(path: str | os.PathLike[str], inventory: SenseInventory
                ) -> tuple[list[TaggedSentence], dict[str, int]]:
    """SemCor JSONL (one sentence per line) with every key checked against the inventory.

    Multiword tokens (``took_place``) become one word with spaces. Keys the inventory
    lacks (SemCor 3.0's ``wnsn=0`` senses) are dropped and counted, as Raganato et al. did.
    """
    path = Path(path)
    stats = {"sentences": 0, "annotations": 0, "dropped_keys": 0, "dropped_tokens": 0}
    out = []
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    tokens, lemmas, senses = rec["tokens"], rec["lemmas"], rec["sense_keys"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise MaskedLMError(f"{path}:{n}: not a SemCor record (tokens, lemmas, sense_keys)") from None
                targets = []
                for i, keys in enumerate(senses):
                    if not keys:
                        continue
                    valid = [k for k in keys if inventory.is_known(k)]
                    stats["dropped_keys"] += len(keys) - len(valid)
                    if not valid:
                        stats["dropped_tokens"] += 1
                        continue
                    pos = SS_TYPE_TO_POS.get(valid[0].split("%")[1][:1], "")
                    targets.append(Target(i, lemmas[i] or valid[0].split("%")[0], pos, valid))
                stats["sentences"] += 1
                stats["annotations"] += len(targets)
                out.append(TaggedSentence([t.replace("_", " ") for t in tokens], targets))
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise MaskedLMError(f"{path}: cannot read ({type(e).__name__}: {e})") from None
    if not out:
        raise MaskedLMError(f"{path}: no sentences")
    return out, stats


def read_raganato(path: str | os.PathLike[str]) -> list[TaggedSentence]:
    """Raganato et al. (2017) XML: ``<sentence>`` of ``<wf>`` and ``<instance id lemma pos>``."""
    path = Path(path)
    if not path.is_file():
        raise MaskedLMError(f"{path}: no such data file")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise MaskedLMError(f"{path}:{e.position[0]}: bad XML ({e})") from None
    out = []
    for sent in root.iter("sentence"):
        words, targets = [], []
        for el in sent:
            if el.tag not in ("wf", "instance"):
                continue
            if el.tag == "instance":
                if not el.get("id") or not el.get("lemma"):
                    raise MaskedLMError(f"{path}: instance in sentence {sent.get('id')} lacks id or lemma")
                targets.append(Target(len(words), el.get("lemma", ""),
                                      UPOS_TO_WN.get(el.get("pos", ""), ""), [], el.get("id", "")))
            words.append((el.text or "").strip() or "_")
        out.append(TaggedSentence(words, targets))
    if not any(s.targets for s in out):
        raise MaskedLMError(f"{path}: no <instance> elements")
    return out


def read_gold(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """Key file: ``instance_id key1 [key2 ...]`` per line."""
    path = Path(path)
    gold: dict[str, list[str]] = {}
    for n, line in enumerate(read_text_lines(path, "key file"), 1):
        cols = line.split()
        if not cols:
            continue
        if len(cols) < 2 or "%" not in cols[1]:
            raise MaskedLMError(f"{path}:{n}: expected 'instance_id sense_key [sense_key ...]'")
        if cols[0] in gold:
            raise MaskedLMError(f"{path}:{n}: instance {cols[0]} listed twice")
        gold[cols[0]] = cols[1:]
    if not gold:
        raise MaskedLMError(f"{path}: empty key file")
    return gold


# ----------------------------------------------------------------------------- centroids
CENTROIDS_FILE, SENSES_FILE, STATS_FILE = "centroids.npz", "senses.json", "standardize.npz"


@dataclass
class SenseCentroids:
    """One mean vector per sense key, with its count and how it was made."""

    keys: list[str]
    vectors: np.ndarray  # (S, H) float32
    counts: np.ndarray  # (S,) int64
    info: dict[str, Any] = field(default_factory=dict)
    standardizer: Standardizer | None = None
    tagger: PosTagger | None = None  # for `predict` on raw text (``wsd train --pos-train``)

    def __post_init__(self) -> None:
        self.row = {k: i for i, k in enumerate(self.keys)}
        norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)
        self.unit = (self.vectors / np.maximum(norms, 1e-12)).astype(np.float32)

    def save(self, directory: str | os.PathLike[str], overwrite: bool = False) -> Path:
        """A directory: centroids.npz (vectors, counts), senses.json (keys, info), and
        standardize.npz, pos_tagger.json when there are such; an existing directory that is
        not a sense folder needs ``overwrite``."""
        from maskedlm.files import atomic_write_dir

        def write(tmp: Path) -> None:
            with open(tmp / CENTROIDS_FILE, "wb") as f:
                np.savez(f, vectors=self.vectors, counts=self.counts)
            (tmp / SENSES_FILE).write_text(json.dumps({"info": self.info, "keys": self.keys}) + "\n")
            if self.standardizer is not None:
                self.standardizer.save(tmp / STATS_FILE)
            if self.tagger is not None:
                (tmp / TAGGER_FILE).write_text(self.tagger.to_json())
        return atomic_write_dir(Path(directory), write, purpose="wsd", overwrite=overwrite)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> SenseCentroids:
        d = Path(directory)
        if not (d / SENSES_FILE).is_file() or not (d / CENTROIDS_FILE).is_file():
            raise MaskedLMError(f"{d}: not a sense-centroid folder (made by `maskedlm wsd train`)")
        try:
            meta = json.loads((d / SENSES_FILE).read_text())
            keys, info = list(meta["keys"]), dict(meta["info"])
            with np.load(d / CENTROIDS_FILE, allow_pickle=False) as z:
                vectors, counts = z["vectors"], z["counts"]
        except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:
            raise MaskedLMError(f"{d}: corrupt sense centroids ({type(e).__name__})") from None
        if len(keys) != len(vectors) or len(counts) != len(vectors):
            raise MaskedLMError(f"{d / SENSES_FILE}: {len(keys)} keys for {len(vectors)} vectors")
        std = Standardizer.load(d / STATS_FILE) if (d / STATS_FILE).is_file() else None
        tagger = PosTagger.load(d / TAGGER_FILE) if (d / TAGGER_FILE).is_file() else None
        return cls(keys, vectors, counts, info, std, tagger)


def train_centroids(model: Embedder, sentences: Sequence[TaggedSentence], *, layers: str = VectorOptions.layers,
                    pool: str = VectorOptions.pool, standardize: Standardizer | None = None,
                    **kw: Any) -> SenseCentroids:
    """Mean contextual vector per sense key; every sentence is embedded exactly once."""
    keys = sorted({k for s in sentences for t in s.targets for k in t.keys})
    if not keys:
        raise MaskedLMError("wsd train: no sense-tagged tokens")
    row = {k: i for i, k in enumerate(keys)}
    H = model.config.hidden_size
    sums = np.zeros((len(keys), H), dtype=np.float64)
    counts = np.zeros(len(keys), dtype=np.int64)
    tagged = [s for s in sentences if s.targets]
    pieces = tokenize(model.tokenizer, [s.words for s in tagged])
    for i, vecs in iter_word_vectors(model, pieces, layers=layers, pool=pool, **kw):
        if standardize is not None:
            vecs = standardize.apply(vecs)
        rows = [(row[k], t.index) for t in tagged[i].targets for k in t.keys]
        r, w = np.array(rows).T
        np.add.at(sums, r, vecs[w])
        np.add.at(counts, r, 1)
    info = {"layers": layers, "pool": pool, "hidden_size": H, "annotations": int(sum(
        len(s.targets) for s in tagged)), "sentences": len(tagged), "senses": len(keys)}
    return SenseCentroids(keys, (sums / counts[:, None]).astype(np.float32), counts, info, standardize)


def train_from_semcor(model: Embedder, semcor: str | os.PathLike[str],
                      inventory: SenseInventory, out: str | os.PathLike[str], *,
                      tagger: PosTagger | None = None, max_sentences: int = WsdTrainOptions.max_sentences,
                      overwrite: bool = False, layers: str = VectorOptions.layers, pool: str = VectorOptions.pool,
                      standardize: Standardizer | None = None,
                      **kw: Any) -> tuple[SenseCentroids, dict[str, Any]]:
    """Sense centroids from SemCor (its first ``max_sentences`` sentences; 0: all), written
    with ``tagger`` (for ``predict`` on raw text) to the folder ``out``
    (``maskedlm wsd train``). ``info`` records the model, the WordNet folder and SemCor,
    so that ``wsd eval`` and ``wsd predict`` find them. Returns the centroids and
    ``{"dropped_keys", "read_seconds", "embed_seconds"}``; ``out`` is checked first.

    >>> wn = WordNetInventory("wordnet/dict")  # doctest: +SKIP
    >>> centroids, stats = train_from_semcor(model, "semcor3.0.jsonl.gz", wn, "senses/")  # doctest: +SKIP
    """
    from maskedlm.files import check_output_dir

    if max_sentences < 0:
        raise MaskedLMError(f"max_sentences must be >= 0, got {max_sentences}")
    model_path, wordnet = getattr(model, "path", None), getattr(inventory, "path", None)
    check_output_dir(out, "wsd", overwrite=overwrite, inputs=[model_path, semcor, wordnet])
    t0 = time.perf_counter()
    sentences, stats = read_semcor(semcor, inventory)
    if max_sentences:
        sentences = sentences[:max_sentences]
    t1 = time.perf_counter()
    centroids = train_centroids(model, sentences, layers=layers, pool=pool,
                                standardize=standardize, **kw)
    t2 = time.perf_counter()
    sources = {"model": model_path, "wordnet": wordnet, "semcor": semcor}
    centroids.info.update({k: str(Path(v).resolve()) for k, v in sources.items() if v is not None})
    centroids.info.update({"dropped_keys": stats["dropped_keys"], "read_seconds": round(t1 - t0, 1),
                           "embed_seconds": round(t2 - t1, 1)})
    centroids.tagger = tagger
    centroids.save(out, overwrite=overwrite)
    return centroids, {"dropped_keys": stats["dropped_keys"], "read_seconds": t1 - t0,
                       "embed_seconds": t2 - t1}


# ----------------------------------------------------------------------------- prediction
@dataclass
class Prediction:
    key: str | None
    source: str  # "1nn", "mfs" (no trained candidate) or "none" (no candidate at all)
    score: float | None = None


def nearest_sense(vec: np.ndarray, candidates: Sequence[str], centroids: SenseCentroids
                  ) -> Prediction:
    """The candidate with the highest cosine; the first (most frequent) one if none is trained."""
    if not candidates:
        return Prediction(None, "none")
    rows = [centroids.row[k] for k in candidates if k in centroids.row]
    if not rows:
        return Prediction(candidates[0], "mfs")
    sims = centroids.unit[rows] @ (vec / max(float(np.linalg.norm(vec)), 1e-12))
    best = int(np.argmax(sims))
    return Prediction(centroids.keys[rows[best]], "1nn", float(sims[best]))


def _embed_targets(model: Embedder, sentences: Sequence[TaggedSentence], centroids: SenseCentroids,
                   **kw: Any) -> dict[tuple[int, int], np.ndarray]:
    info = centroids.info
    if info.get("hidden_size", model.config.hidden_size) != model.config.hidden_size:
        raise MaskedLMError(f"centroids have {info['hidden_size']} dimensions, the model "
                            f"{model.config.hidden_size} (trained with another model?)")
    pieces = tokenize(model.tokenizer, [s.words for s in sentences])
    out = {}
    for i, vecs in iter_word_vectors(model, pieces, layers=info.get("layers", "last"),
                                     pool=info.get("pool", "mean"), **kw):
        if centroids.standardizer is not None:
            vecs = centroids.standardizer.apply(vecs)
        for t in sentences[i].targets:
            out[(i, t.index)] = vecs[t.index]
    return out


def predict(model: Embedder, centroids: SenseCentroids, inventory: SenseInventory,
            sentences: Sequence[TaggedSentence], **kw: Any) -> dict[str, Prediction]:
    """1-NN prediction for every target (by id) of ``sentences``."""
    vecs = _embed_targets(model, sentences, centroids, **kw)
    return {t.id: nearest_sense(vecs[(i, t.index)], _candidates(inventory, t), centroids)
            for i, s in enumerate(sentences) for t in s.targets}


def mfs_predictions(inventory: SenseInventory, sentences: Sequence[TaggedSentence]
                    ) -> dict[str, Prediction]:
    """The most frequent sense baseline: every target gets its lemma's first sense."""
    out = {}
    for s in sentences:
        for t in s.targets:
            cands = _candidates(inventory, t)
            out[t.id] = Prediction(cands[0], "mfs") if cands else Prediction(None, "none")
    return out


def _candidates(inventory: SenseInventory, t: Target) -> list[str]:
    if t.pos:
        return inventory.candidates(t.lemma, t.pos)
    return [k for pos in "nvar" for k in inventory.candidates(t.lemma, pos)]


def score(predictions: Mapping[str, str | None], gold: Mapping[str, Sequence[str]]
          ) -> dict[str, float]:
    """Precision (right / answered), recall (right / gold instances) and their F1.

    >>> score({"a": "x%1", "b": "y%1", "c": None}, {"a": ["x%1"], "b": ["z%1"], "c": ["w%1"]})
    {'precision': 0.5, 'recall': 0.3333333333333333, 'f1': 0.4}
    """
    answered = [i for i in gold if predictions.get(i) is not None]
    right = sum(predictions[i] in gold[i] for i in answered)
    p = right / len(answered) if answered else 0.0
    r = right / len(gold) if gold else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def evaluate(model: Embedder, centroids: SenseCentroids, inventory: SenseInventory,
             data: str | os.PathLike[str], gold_path: str | os.PathLike[str],
             **kw: Any) -> dict[str, Any]:
    """Score 1-NN and the MFS baseline on a Raganato data/key pair with the same code."""
    sentences = read_raganato(data)
    gold = read_gold(gold_path)
    ids = {t.id for s in sentences for t in s.targets}
    unknown = sum(not inventory.is_known(k) for keys in gold.values() for k in keys)
    if unknown:
        warnings.warn(f"{gold_path}: {unknown} gold key(s) not in the sense inventory", stacklevel=2)
    if ids - set(gold):
        warnings.warn(f"{gold_path}: {len(ids - set(gold))} instance(s) of {data} have no gold "
                      "key and are not scored", stacklevel=2)
    preds = predict(model, centroids, inventory, sentences, **kw)
    mfs = mfs_predictions(inventory, sentences)
    result = score({i: p.key for i, p in preds.items()}, gold)
    sources = [p.source for i, p in preds.items() if i in gold]
    return {**result, "mfs_f1": score({i: p.key for i, p in mfs.items()}, gold)["f1"],
            "instances": len(gold), "unknown_gold_keys": unknown,
            "fallbacks": {s: sources.count(s) for s in ("1nn", "mfs", "none")}}


def predict_text(model: Embedder, centroids: SenseCentroids, inventory: SenseInventory,
                 text: str | Sequence[str], tagger: PosTagger | None = None,
                 **kw: Any) -> list[dict[str, Any]]:
    """Disambiguate every content word of untokenized ``text`` (or of a list of words).

    Words come from :func:`word_spans`; with a tagger (``tagger``, else the one saved
    with the centroids) each word's candidates are the WordNet senses of its tagged part
    of speech only, and words tagged as function words, numbers or punctuation are
    skipped; a content word WordNet lacks under its tag (a tagging error, most often)
    keeps the senses of every part of speech, as every word does without a tagger.
    Each answer: index (word number), word, start/end (characters, for a string), pos
    (the tag, or None), sense_key, source, score, definition.
    """
    if isinstance(text, str):
        spans: list[tuple[int, int]] | None = word_spans(text)
        words = [text[a:b] for a, b in spans]
    else:
        spans, words = None, list(text)
    tagger = tagger or centroids.tagger
    tags: list[str | None] = list(tagger.tag(words)) if tagger else [None] * len(words)
    targets = []
    for i, (w, tag) in enumerate(zip(words, tags, strict=True)):
        if w.lower() in STOPWORDS or not any(c.isalpha() for c in w):
            continue
        if tag is not None and tag not in PREDICT_POS:
            continue  # tagged as a function word, number, symbol or punctuation
        found = inventory.analyses(w)
        if tag is not None:  # the tagged part of speech only, unless WordNet has none there
            found = [(lemma, pos) for lemma, pos in found if pos == PREDICT_POS[tag]] or found
        if found:
            targets.append((Target(i, found[0][0], found[0][1] if tag else "", [], str(i)), found))
    if not targets:
        return []
    sent = TaggedSentence(words, [t for t, _ in targets])
    vecs = _embed_targets(model, [sent], centroids, **kw)
    out = []
    for t, found in targets:
        cands = [k for lemma, pos in found for k in inventory.candidates(lemma, pos)]
        p = nearest_sense(vecs[(0, t.index)], cands, centroids)
        where = {"start": spans[t.index][0], "end": spans[t.index][1]} if spans else {}
        out.append({"index": t.index, "word": words[t.index], **where, "pos": tags[t.index],
                    "sense_key": p.key, "source": p.source, "score": p.score,
                    "definition": inventory.definition(p.key) if p.key else ""})
    return out
