"""The one CoNLL-U reader: sentences, tag column, skipped lines, first-word line numbers, errors."""

from __future__ import annotations

import pytest
from conftest import SHARED_DATA

from maskedlm.data.conllu import ConlluColumnsError, read_conllu
from maskedlm.errors import MaskedLMError

ROW = "{}\t{}\t{}\t{}\t_\t_\t0\troot\t_\t_\n"


def test_sentences_tags_and_first_word_lines(tmp_path):
    text = ("# sent_id = 1\n# text = I don't\n" + ROW.format(1, "I", "I", "PRON")
            + "2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n" + ROW.format(2, "do", "do", "AUX")
            + ROW.format("2.1", "x", "x", "X") + ROW.format(3, "n't", "not", "PART")
            + "\n\n" + ROW.format(1, "Go", "go", "VERB"))  # no blank line at the end
    path = tmp_path / "a.conllu"
    path.write_text(text)
    sents = read_conllu(path)
    assert [(s.words, s.tags, s.line) for s in sents] == [
        (["I", "do", "n't"], ["PRON", "AUX", "PART"], 3), (["Go"], ["VERB"], 10)]
    assert [s.tags for s in read_conllu(path, column=2)] == [["I", "do", "not"], ["go"]]


def test_bad_line_names_file_line_and_columns_and_empty_file_is_no_sentences(tmp_path):
    path = tmp_path / "b.conllu"
    path.write_text("# c\n" + ROW.format(1, "He", "he", "PRON") + "2\tsat\tVERB\n")
    with pytest.raises(ConlluColumnsError, match=r"b.conllu:3: malformed CoNLL-U line: 3 columns, "
                                                 r"expected 10") as e:
        read_conllu(path)
    assert isinstance(e.value, MaskedLMError) and (e.value.line, e.value.columns) == (3, 3)
    (tmp_path / "empty.conllu").write_text("# only a comment\n\n")
    assert read_conllu(tmp_path / "empty.conllu") == []


@pytest.mark.data
def test_real_treebank():
    sents = read_conllu(SHARED_DATA / "ud_en_lines" / "en_lines-ud-dev.conllu")
    assert len(sents) == 1118 and (sents[0].words[:2], sents[0].tags[:2]) == (["When", "a"],
                                                                              ["SCONJ", "DET"])
    assert all(len(s.words) == len(s.tags) > 0 for s in sents)
