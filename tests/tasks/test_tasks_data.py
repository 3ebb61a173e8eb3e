"""Readers of fine-tuning data: tables, CoNLL, CoNLL-U, span JSONL, and their bad input."""


import pytest
from conftest import SHARED_DATA

from maskedlm.errors import MaskedLMError
from maskedlm.tasks.data import (
    bio_to_spans,
    iob1_to_bio,
    is_bio,
    read_conll,
    read_conllu,
    read_span_jsonl,
    read_spans,
    read_table,
)

DATA = SHARED_DATA


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_tsv_named_columns_and_bom(tmp_path):
    p = write(tmp_path, "mrpc.tsv", "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
              '1\t1\t2\tHe said "hi".\tHe greeted.\n0\t3\t4\tA\tB\n')
    ex = read_table(p, pair=True)
    assert [(e.text, e.pair, e.label) for e in ex] == [('He said "hi".', "He greeted.", "1"),
                                                       ("A", "B", "0")]


def test_positional_columns_without_header(tmp_path):
    p = write(tmp_path, "x.tsv", "good film\tpos\nbad film\tneg\n")
    ex = read_table(p, header=False)
    assert [(e.text, e.label) for e in ex] == [("good film", "pos"), ("bad film", "neg")]
    ex = read_table(p, header=False, text_column=0, label_column="1")
    assert ex[1].label == "neg"


def test_csv_and_jsonl(tmp_path):
    p = write(tmp_path, "x.csv", 'text,label\n"a, quoted",1\nplain,0\n')
    assert read_table(p)[0].text == "a, quoted"
    p = write(tmp_path, "x.jsonl", '{"premise": "a", "hypothesis": "b", "label": 2}\n')
    e = read_table(p, pair=True)[0]
    assert (e.text, e.pair, e.label) == ("a", "b", "2")


def test_table_errors_name_file_and_line(tmp_path):
    p = write(tmp_path, "bad.tsv", "sentence\tlabel\nok\t1\nmissing a column\n")
    with pytest.raises(MaskedLMError, match=r"bad.tsv:3: 1 columns"):
        read_table(p)
    p = write(tmp_path, "nolabel.tsv", "sentence\tlabel\nok\t\n")
    with pytest.raises(MaskedLMError, match=r"nolabel.tsv:2: empty label"):
        read_table(p)
    p = write(tmp_path, "empty.tsv", "sentence\tlabel\n")
    with pytest.raises(MaskedLMError, match="empty split"):
        read_table(p)
    p = write(tmp_path, "cols.tsv", "foo\tbar\nx\ty\n")
    with pytest.raises(MaskedLMError, match="no text column"):
        read_table(p)
    with pytest.raises(MaskedLMError, match="no such file"):
        read_table(tmp_path / "nope.tsv")


def test_conll_docstart_blank_lines_and_iob1(tmp_path):
    p = write(tmp_path, "c.txt", "-DOCSTART- -X- -X- O\n\nEU NNP I-ORG\nrejects VBZ O\n"
              "German JJ I-MISC\n\n\nPeter NNP I-PER\nBlackburn NNP I-PER\n")
    sents = read_conll(p)
    assert [s.words for s in sents] == [["EU", "rejects", "German"], ["Peter", "Blackburn"]]
    assert sents[0].tags == ["B-ORG", "O", "B-MISC"]
    assert sents[1].tags == ["B-PER", "I-PER"]
    assert sents[0].where.endswith("c.txt:3")


def test_conll_errors(tmp_path):
    p = write(tmp_path, "bad.txt", "EU B-ORG\nrejects\n")
    with pytest.raises(MaskedLMError, match=r"bad.txt:2: malformed line"):
        read_conll(p)
    p = write(tmp_path, "ragged.txt", "EU NNP B-ORG\nrejects O\n")
    with pytest.raises(MaskedLMError, match=r"ragged.txt:2: 2 columns"):
        read_conll(p)
    p = write(tmp_path, "empty.txt", "\n-DOCSTART- O\n\n")
    with pytest.raises(MaskedLMError, match="empty split"):
        read_conll(p)


def test_iob1_and_bio_spans():
    assert iob1_to_bio(["I-A", "B-A", "I-A", "O", "I-B", "I-A"]) == ["B-A", "B-A", "I-A", "O", "B-B", "B-A"]
    assert iob1_to_bio(["B-A", "I-A", "O"]) == ["B-A", "I-A", "O"]  # BIO stays as it is
    assert bio_to_spans(["B-A", "I-A", "B-A", "I-B", "O", "B-C"]) == [(0, 2, "A"), (2, 3, "A"),
                                                                      (3, 4, "B"), (5, 6, "C")]
    assert is_bio({"O", "B-X"}) and not is_bio({"NOUN", "VERB"}) and not is_bio({"O"})


def test_conllu_skips_comments_and_multiword(tmp_path):
    line = "{}\t{}\t_\t{}\t_\t_\t0\troot\t_\t_\n"
    text = ("# sent_id = 1\n" + line.format(1, "I", "PRON") + "3-4\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n"
            + line.format(2, "do", "AUX") + line.format("2.1", "x", "X") + "\n")
    sents = read_conllu(write(tmp_path, "a.conllu", text))
    assert sents[0].words == ["I", "do"] and sents[0].tags == ["PRON", "AUX"]
    with pytest.raises(MaskedLMError, match=r"b.conllu:1: malformed CoNLL-U"):
        read_conllu(write(tmp_path, "b.conllu", "1\tI\tPRON\n"))


def test_span_jsonl_and_errors(tmp_path):
    p = write(tmp_path, "g.jsonl", '{"tokens": ["IL-2", "gene"], "entity_mentions": '
              '[{"start": 0, "end": 2, "entity_type": "DNA"}, {"start": 0, "end": 1, "entity_type": "protein"}]}\n')
    assert read_span_jsonl(p)[0].spans == [(0, 1, "protein"), (0, 2, "DNA")]
    p = write(tmp_path, "bad.jsonl", '{"tokens": ["a"], "entity_mentions": [{"start": 0, "end": 3, "entity_type": "X"}]}\n')
    with pytest.raises(MaskedLMError, match=r"bad.jsonl:1: span \[0, 3\) outside the sentence"):
        read_span_jsonl(p)
    p = write(tmp_path, "notjson.jsonl", "{oops\n")
    with pytest.raises(MaskedLMError, match=r"notjson.jsonl:1: not JSON"):
        read_span_jsonl(p)


def test_conll_bio_to_span_sentences(tmp_path):
    p = write(tmp_path, "c.txt", "Jane B-PER\nVillanueva I-PER\nof O\nUnited B-ORG\n")
    assert read_spans(p)[0].spans == [(0, 2, "PER"), (3, 4, "ORG")]


@pytest.mark.data
def test_real_files_read():
    assert len(read_conll(DATA / "conll2003" / "dev.txt")) == 3250
    assert len(read_table(DATA / "mrpc" / "dev.tsv", pair=True)) == 408
    assert len(read_table(DATA / "rte" / "dev.tsv", pair=True)) == 277
    assert len(read_table(DATA / "sst2" / "dev.tsv")) == 872
    genia = read_span_jsonl(DATA / "genia" / "dev.jsonlines")
    assert (len(genia), sum(len(s.spans) for s in genia)) == (1765, 4714)
    assert len(read_conllu(DATA / "ud_en_lines" / "en_lines-ud-dev.conllu")) == 1118
