"""Export a pretrained run as ``maskedlm export-hf`` does, load it with transformers' Auto classes and
check that both fill the same masks with the same logits.

    python benchmarks/studies/export_roundtrip.py runs/modernbert-mini-1h [--sentence "..."]...

Prints, per sentence, our top-5 and transformers' top-5 and the largest absolute logit
difference over the whole sequence; exits 1 when the top-5 differ or the logits differ by
more than --atol (fp32, eval mode).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

import maskedlm
from maskedlm.export import export_hf

SENTENCES = [
    "She opened the [MASK] and walked into the room.",
    "He did not know what to [MASK].",
    "It was a cold [MASK] in the middle of winter.",
]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--sentence", action="append", help="default: three fixed sentences")
    p.add_argument("--atol", type=float, default=1e-4)
    a = p.parse_args()
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    ours = maskedlm.load(a.run)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "hf"
        export_hf(a.run, out)
        hf = AutoModelForMaskedLM.from_pretrained(out).eval()
        tok = AutoTokenizer.from_pretrained(out)
        print(f"transformers class: {type(hf).__name__}")
        for s in a.sentence or SENTENCES:
            enc = tok(s.replace("[MASK]", tok.mask_token), return_tensors="pt")
            with torch.no_grad():
                theirs = hf(**enc).logits[0]
            mine_enc = ours.tokenizer.encode(s)
            ids = torch.as_tensor(mine_enc["input_ids"])[None]
            assert ids.tolist() == enc["input_ids"].tolist(), "the two tokenizers disagree"
            with torch.no_grad():
                hidden = ours.model.bert(ids, torch.as_tensor(mine_enc["token_type_ids"])[None])
                mine = ours.model.mlm_logits(hidden.last_hidden_state[0], torch.arange(ids.shape[1]))
            pos = (enc["input_ids"][0] == tok.mask_token_id).nonzero()[0, 0]
            top_theirs = [tok.convert_ids_to_tokens(int(i)) for i in theirs[pos].topk(5).indices]
            top_ours = [r["token"] for r in ours.fill_mask(s)[0]]
            diff = float((mine.float() - theirs).abs().max())
            same = top_ours == top_theirs and diff <= a.atol
            ok &= same
            print(f"{s}\n  ours:         {top_ours}\n  transformers: {top_theirs}\n"
                  f"  max |logit difference| {diff:.2e} -> {'same' if same else 'DIFFERENT'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
