"""Readers for fine-tuning data: GLUE-style tables, CoNLL columns, CoNLL-U, span JSONL.

Every reader returns plain dataclasses that remember the line they came from, so a
later check (an unknown label in dev, say) can name ``file:line``. Bad input raises
:class:`~maskedlm.errors.MaskedLMError` with a one-line message.

>>> sents = read_conll("conll2003/dev.txt")  # doctest: +SKIP
>>> sents[0].words[:3], sents[0].tags[:3]  # doctest: +SKIP
(['CRICKET', '-', 'LEICESTERSHIRE'], ['O', 'O', 'B-ORG'])
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from maskedlm.data import conllu
from maskedlm.data.corpus import read_text_lines
from maskedlm.errors import MaskedLMError

# Column names tried, in order, when the user names none (GLUE, HF datasets, MRPC).
TEXT_COLUMNS = ("sentence", "sentence1", "text", "#1 String", "question", "premise")
PAIR_COLUMNS = ("sentence2", "#2 String", "hypothesis", "text_b", "question2")
LABEL_COLUMNS = ("label", "Quality", "gold_label", "labels")
SPAN_EXTENSIONS = (".jsonl", ".jsonlines", ".json")


@dataclass
class TextExample:
    """One sentence (``pair`` None) or sentence pair with its label (None if unlabelled)."""

    text: str
    pair: str | None
    label: str | None
    where: str = ""


@dataclass
class TaggedSentence:
    """Words with one tag each."""

    words: list[str]
    tags: list[str]
    where: str = ""


@dataclass
class SpanSentence:
    """Words with entity spans ``(start, end, label)``, word offsets, ``end`` exclusive."""

    words: list[str]
    spans: list[tuple[int, int, str]] = field(default_factory=list)
    where: str = ""


def _open_lines(path: str | Path) -> list[str]:
    return read_text_lines(path)  # MRPC starts with a BOM: read_text_lines drops it


def _nonempty(items: list, path: str | Path) -> list:
    if not items:
        raise MaskedLMError(f"{path}: empty split (no examples)")
    return items


# ----------------------------------------------------------------------------- tables
def _resolve_column(name: str | int | None, header: list[str] | None, candidates: tuple[str, ...],
                    what: str, path: str | Path) -> int | None:
    if name is None:
        if header is None:
            return None
        return next((header.index(c) for c in candidates if c in header), None)
    if isinstance(name, int) or str(name).lstrip("-").isdigit():
        return int(name)
    if header is None:
        raise MaskedLMError(f"{path}: {what} column {name!r} named, but the file has no header")
    if name not in header:
        raise MaskedLMError(f"{path}:1: no {what} column {name!r} (header: {', '.join(header)})")
    return header.index(str(name))


def _table_rows(path: str | Path) -> list[tuple[int, list[str] | dict]]:
    p = Path(path)
    lines = _open_lines(p)
    if p.suffix in SPAN_EXTENSIONS:
        rows: list[tuple[int, list[str] | dict]] = []
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise MaskedLMError(f"{p}:{i}: not JSON ({e.msg})") from None
            except RecursionError:
                raise MaskedLMError(f"{p}:{i}: JSON nested too deep") from None
            if not isinstance(obj, dict):
                raise MaskedLMError(f"{p}:{i}: expected a JSON object")
            rows.append((i, obj))
        return rows
    if p.suffix == ".csv":
        return [(i, row) for i, row in enumerate(csv.reader(lines), 1) if row]
    # TSV without quoting, as GLUE ships it (MRPC strings contain bare quotes)
    return [(i, line.split("\t")) for i, line in enumerate(lines, 1) if line.strip()]


def read_table(path: str | Path, *, pair: bool = False, text_column: str | int | None = None,
               pair_column: str | int | None = None, label_column: str | int | None = None,
               header: bool = True, require_labels: bool = True) -> list[TextExample]:
    """Sentence (pair) classification examples from TSV, CSV or JSONL.

    Columns are given by name (header row) or 0-based position; unnamed columns are
    found among the usual GLUE names. Without a header the defaults are positional:
    text, [pair,] label.

    >>> read_table("rte/dev.tsv", pair=True)[0].label  # doctest: +SKIP
    '1'
    """
    rows = _table_rows(path)
    if not rows:
        raise MaskedLMError(f"{path}: empty split (no examples)")
    is_json = isinstance(rows[0][1], dict)
    names: list[str] | None = None
    if is_json:
        keys = set().union(*(r.keys() for _, r in rows))  # type: ignore[union-attr]
        names = sorted(keys)
    elif header:
        names = [c.strip() for c in rows[0][1]]  # type: ignore[union-attr]
        rows = rows[1:]
    ti = _resolve_column(text_column, names, TEXT_COLUMNS, "text", path)
    pi = _resolve_column(pair_column, names, PAIR_COLUMNS, "pair", path) if pair else None
    li = _resolve_column(label_column, names, LABEL_COLUMNS, "label", path)
    if names is None:
        ti = 0 if ti is None else ti
        pi = (1 if pi is None else pi) if pair else None
        li = (2 if pair else 1) if li is None else li
    if ti is None:
        raise MaskedLMError(f"{path}:1: no text column (tried {', '.join(TEXT_COLUMNS)}); "
                            "name one with --text-column")
    if pair and pi is None:
        raise MaskedLMError(f"{path}:1: no second-sentence column (tried {', '.join(PAIR_COLUMNS)});"
                            " name one with --pair-column")
    if li is None and require_labels:
        raise MaskedLMError(f"{path}:1: no label column (tried {', '.join(LABEL_COLUMNS)}); "
                            "name one with --label-column")
    width = len(names) if names is not None and not is_json else None
    out = []
    for lineno, row in rows:
        where = f"{path}:{lineno}"
        needed = [c for c in (ti, pi, li) if c is not None]
        if is_json:
            values = {c: row.get(names[c]) for c in needed}  # type: ignore[union-attr, index]
        else:
            if width is not None and len(row) != width:
                raise MaskedLMError(f"{where}: {len(row)} columns, the header has {width}")
            if any(not -len(row) <= c < len(row) for c in needed):
                raise MaskedLMError(f"{where}: malformed line, {len(row)} columns, "
                                    f"expected at least {max(needed) + 1}")
            values = {c: row[c] for c in needed}  # type: ignore[index]

        def cell(c: int | None, values: dict = values) -> str | None:
            return None if c is None or values.get(c) is None else str(values[c])

        label = cell(li)
        if require_labels and (label is None or str(label).strip() == ""):
            raise MaskedLMError(f"{where}: empty label")
        text = cell(ti)
        if text is None:
            raise MaskedLMError(f"{where}: missing text")
        out.append(TextExample(str(text).strip(), None if pi is None else str(cell(pi)).strip(),
                               None if label is None else str(label).strip(), where))
    return _nonempty(out, path)


# ----------------------------------------------------------------------------- tagging
def iob1_to_bio(tags: list[str]) -> list[str]:
    """Rewrite IOB1 (``I-X`` opens an entity unless it continues one) as BIO (IOB2).

    A no-op on valid BIO.

    >>> iob1_to_bio(["I-PER", "I-PER", "O", "I-LOC", "B-LOC"])
    ['B-PER', 'I-PER', 'O', 'B-LOC', 'B-LOC']
    """
    out, prev = [], "O"
    for tag in tags:
        if tag.startswith("I-") and (prev == "O" or prev[2:] != tag[2:]):
            tag = "B-" + tag[2:]
        out.append(tag)
        prev = tag
    return out


def is_bio(tags: set[str]) -> bool:
    """True when every tag is ``O``, ``B-X`` or ``I-X`` (an entity tag set, not POS)."""
    return bool(tags) and all(t == "O" or t[:2] in ("B-", "I-") for t in tags) and tags != {"O"}


def read_conll(path: str | Path, *, tag_column: int = -1, word_column: int = 0,
               convert_iob1: bool = True) -> list[TaggedSentence]:
    """CoNLL column file: one word a line (word first, tag last), blank lines between
    sentences, ``-DOCSTART-`` lines skipped. BIO tags are normalised from IOB1.

    >>> read_conll("conll2003/train.txt")[0].tags  # doctest: +SKIP
    ['B-ORG', 'O', 'B-MISC', 'O', 'O', 'O', 'B-MISC', 'O', 'O']
    """
    sents: list[TaggedSentence] = []
    words: list[str] = []
    tags: list[str] = []
    start, width = 0, None

    def flush() -> None:
        if words:
            sents.append(TaggedSentence(list(words), list(tags), f"{path}:{start}"))
        words.clear()
        tags.clear()

    for i, line in enumerate(_open_lines(path), 1):
        cols = line.split()
        if not cols:
            flush()
            continue
        if cols[0] == "-DOCSTART-":
            flush()
            continue
        if len(cols) < 2:
            raise MaskedLMError(f"{path}:{i}: malformed line {line.strip()[:40]!r}: "
                                "expected a word and a tag")
        if width is None:
            width = len(cols)
        elif len(cols) != width:
            raise MaskedLMError(f"{path}:{i}: {len(cols)} columns, earlier lines have {width}")
        if not words:
            start = i
        words.append(cols[word_column])
        tags.append(cols[tag_column])
    flush()
    _nonempty(sents, path)
    if convert_iob1 and is_bio({t for s in sents for t in s.tags}):
        for s in sents:
            s.tags = iob1_to_bio(s.tags)
    return sents


def read_conllu(path: str | Path, *, column: int = 3) -> list[TaggedSentence]:
    """CoNLL-U words with their UPOS (column 4); multiword ranges and empty nodes skipped.

    >>> read_conllu("ud_en_lines/en_lines-ud-dev.conllu")[0].tags[:2]  # doctest: +SKIP
    ['SCONJ', 'DET']
    """
    return _nonempty([TaggedSentence(s.words, s.tags, f"{path}:{s.line}")
                      for s in conllu.read_conllu(path, column=column)], path)


def read_tagged(path: str | Path, **kw) -> list[TaggedSentence]:
    """CoNLL-U for ``.conllu`` files, CoNLL columns otherwise."""
    return read_conllu(path) if str(path).endswith(".conllu") else read_conll(path, **kw)


# ----------------------------------------------------------------------------- spans
def bio_to_spans(tags: list[str]) -> list[tuple[int, int, str]]:
    """Entity spans ``(start, end_exclusive, type)`` of a BIO sequence (stray ``I-X`` opens one).

    >>> bio_to_spans(["B-PER", "I-PER", "O", "I-LOC"])
    [(0, 2, 'PER'), (3, 4, 'LOC')]
    """
    spans, start, kind = [], None, None
    for i, tag in enumerate([*tags, "O"]):
        continues = tag.startswith("I-") and kind == tag[2:]
        if start is not None and not continues:
            spans.append((start, i, kind))
            start, kind = None, None
        if tag[:2] in ("B-", "I-") and not continues:
            start, kind = i, tag[2:]
    return spans


def read_span_jsonl(path: str | Path) -> list[SpanSentence]:
    """JSONL with ``tokens`` and ``entity_mentions`` (``start``, ``end`` exclusive,
    ``entity_type``), as the GENIA files; ``entities``/``label``/``type`` also accepted.

    >>> read_span_jsonl("genia/dev.jsonlines")[0].spans  # doctest: +SKIP
    [(2, 3, 'DNA'), (4, 5, 'DNA'), (6, 8, 'DNA')]
    """
    out = []
    for i, line in enumerate(_open_lines(path), 1):
        if not line.strip():
            continue
        where = f"{path}:{i}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise MaskedLMError(f"{where}: not JSON ({e.msg})") from None
        except RecursionError:
            raise MaskedLMError(f"{where}: JSON nested too deep") from None
        words = obj.get("tokens") if isinstance(obj, dict) else None
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise MaskedLMError(f"{where}: no 'tokens' list of strings")
        spans = []
        for m in obj.get("entity_mentions", obj.get("entities", [])):
            try:
                s, e = int(m["start"]), int(m["end"])
                kind = str(m.get("entity_type", m.get("label", m.get("type"))))
            except (KeyError, TypeError, ValueError):
                raise MaskedLMError(f"{where}: an entity lacks start/end") from None
            if not 0 <= s < e <= len(words):
                raise MaskedLMError(f"{where}: span [{s}, {e}) outside the sentence "
                                    f"of {len(words)} tokens")
            spans.append((s, e, kind))
        out.append(SpanSentence(words, sorted(set(spans)), where))
    return _nonempty(out, path)


def read_spans(path: str | Path) -> list[SpanSentence]:
    """Span JSONL, or a CoNLL BIO file converted to spans.

    >>> read_spans("conll2003/dev.txt")[0].spans  # doctest: +SKIP
    """
    if Path(path).suffix in SPAN_EXTENSIONS:
        return read_span_jsonl(path)
    sents = read_conll(path)
    if not is_bio({t for s in sents for t in s.tags}):
        raise MaskedLMError(f"{path}: the tag column is not BIO, so it has no entity spans")
    return [SpanSentence(s.words, bio_to_spans(s.tags), s.where) for s in sents]


# ----------------------------------------------------------------------------- SQuAD
@dataclass
class QAExample:
    """One question over one context; ``answers`` are ``(text, char_start)`` pairs, empty for
    an unanswerable (SQuAD v2.0 ``is_impossible``) or an unlabelled question."""

    id: str
    question: str
    context: str
    answers: list[tuple[str, int]] = field(default_factory=list)
    impossible: bool = False
    title: str = ""
    where: str = ""


def _squad_field(obj: object, key: str, kind: type, where: str) -> object:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, kind):
        raise MaskedLMError(f"{where}: no {key!r} {kind.__name__}")
    return value


def read_squad(path: str | Path, *, labelled: bool = True) -> list[QAExample]:
    """SQuAD v1.1 / v2.0 JSON (``{"data": [{"title", "paragraphs": [{"context", "qas":
    [{"id", "question", "answers": [{"text", "answer_start"}], "is_impossible"}]}]}]}``).

    Every answer must sit at its ``answer_start`` in the context; errors name the article
    and the question id. ``labelled=False`` accepts questions without answers.

    >>> ex = read_squad("squad/train.json")  # doctest: +SKIP
    >>> ex[0].context[ex[0].answers[0][1]:][:len(ex[0].answers[0][0])] == ex[0].answers[0][0]  # doctest: +SKIP
    True
    """
    p = Path(path)
    if not p.is_file():
        raise MaskedLMError(f"{p}: no such file")
    try:  # read whole: splitting lines would cut contexts holding U+2028
        obj = json.loads(p.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as e:
        raise MaskedLMError(f"{p}: not UTF-8 (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise MaskedLMError(f"{p}:{e.lineno}: not JSON ({e.msg})") from None
    except RecursionError:  # json's parser recurses once per level of nesting
        raise MaskedLMError(f"{p}: JSON nested too deep (not SQuAD)") from None
    articles = _squad_field(obj, "data", list, f"{p}: not SQuAD JSON: top level")
    out: list[QAExample] = []
    seen: set[str] = set()
    for a, article in enumerate(articles):
        title = str(article.get("title", a)) if isinstance(article, dict) else str(a)
        for k, para in enumerate(_squad_field(article, "paragraphs", list, f"{p}: article {title!r}")):
            where = f"{p}: article {title!r} paragraph {k}"
            context = _squad_field(para, "context", str, where)
            for qa in _squad_field(para, "qas", list, where):
                qid = qa.get("id") if isinstance(qa, dict) else None
                if not isinstance(qid, str | int) or str(qid) == "":
                    raise MaskedLMError(f"{where}: a question has no 'id'")
                qid = str(qid)
                here = f"{p}: article {title!r} question {qid}"
                if qid in seen:
                    raise MaskedLMError(f"{here}: duplicate question id")
                seen.add(qid)
                if not context.strip():
                    raise MaskedLMError(f"{here}: empty context")
                question = _squad_field(qa, "question", str, here)
                if not question.strip():
                    raise MaskedLMError(f"{here}: empty question")
                impossible = bool(qa.get("is_impossible", False))
                answers = []
                for ans in qa.get("answers", []) or []:
                    try:
                        atext, start = ans["text"], int(ans["answer_start"])
                    except (KeyError, TypeError, ValueError, OverflowError):  # also Infinity, NaN
                        raise MaskedLMError(f"{here}: an answer lacks 'text' or an integer "
                                            "'answer_start'") from None
                    if not 0 <= start <= len(context):
                        raise MaskedLMError(f"{here}: answer_start {start} is outside the context "
                                            f"(0..{len(context)})")
                    if not isinstance(atext, str) or not atext:
                        raise MaskedLMError(f"{here}: an answer has an empty 'text'")
                    if context[start:start + len(atext)] != atext:
                        raise MaskedLMError(f"{here}: answer_start {start} does not match "
                                            f"the answer text {atext[:40]!r}")
                    answers.append((atext, start))
                if impossible and answers:
                    raise MaskedLMError(f"{here}: is_impossible but has answers")
                if labelled and not answers and not impossible:
                    raise MaskedLMError(f"{here}: no answers (and not marked is_impossible)")
                out.append(QAExample(qid, question, context, answers, impossible, title, here))
    return _nonempty(out, p)
