"""What limits the starter model's zero-shot scores (issue 3): the text prompts or the image features?

On the same 600 scenes of held-out drawings as `python -m mumic_core starter evaluate`, compares
three ways of scoring a class: its text prompts (zero-shot), the mean image embedding of its
training drawings (image prototypes), and a logistic regression trained on those embeddings with
their classes (linear probe, a supervised ceiling for these features). Also zero-shot on the
scenes of a single drawing only.

    .venv/bin/python benchmarks/starter_diagnosis.py [--model mumic_data/models/starter]
        [--corpus mumic_data/starter-corpus] [--scenes 600] [--out FILE.json] [--smoke [DIR]]

Prints the result as JSON (and writes it to ``--out``). ``--smoke``: 24 scenes, and stand-ins for
the starter model (random weights) and its corpus (a few shapes in the drawings' folders).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._smoke import (  # noqa: E402
    add_smoke_option,
    check_written,
    require,
    smoke_folder,
    stand_in_corpus,
    stand_in_model,
)
from mumic_core.encoders.encoding import encode_images, encode_prompts  # noqa: E402
from mumic_core.encoders.factory import load_encoder  # noqa: E402
from mumic_core.encoders.spec import EncoderSpec  # noqa: E402
from mumic_core.encoders.starter import embed_held_out_scenes
from mumic_core.model.metrics import gap_at_k, mean_average_precision  # noqa: E402
from mumic_core.synthetic.starter_corpus import (  # noqa: E402
    all_drawings,
    category_prompts,  # noqa: E402
    load_held_out,
    split_held_out,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "mumic_data/models/starter")
    ap.add_argument("--corpus", type=Path, default=ROOT / "mumic_data/starter-corpus")
    ap.add_argument("--scenes", type=int, default=600, help="held-out scenes (600: those of `starter evaluate`)")
    ap.add_argument("--out", type=Path, default=None, help="also write the result to this JSON file")
    add_smoke_option(ap)
    args = ap.parse_args()
    if args.smoke is not None:
        folder = smoke_folder(args.smoke, "starter_diagnosis")
        args.scenes, args.out = 24, folder / "starter_diagnosis.json"
        args.model, args.corpus = stand_in_model(folder / "starter"), stand_in_corpus(folder / "corpus")
    enc = load_encoder(EncoderSpec(f"local-dir:{args.model.resolve()}", "", "starter", ""))
    held, root, font = load_held_out(args.corpus)
    with tempfile.TemporaryDirectory() as tmp:  # the scenes of `starter evaluate`
        scenes, truth, classes = embed_held_out_scenes(enc, held, Path(tmp), args.scenes, root=root, font=font)

    # the corpus's first single picture of each training drawing (build_corpus names them by index)
    train, _ = split_held_out(all_drawings(root, font), seed=0)
    picked = [(k, d) for k, d in enumerate(train) if d.category in classes]
    train_emb = encode_images(enc, [args.corpus / "images" / f"single_{k:05d}_0.png" for k, _ in picked])
    train_cls = np.array([classes.index(d.category) for _, d in picked])

    text = encode_prompts(enc, category_prompts(classes)).cpu().numpy()
    protos = np.stack([train_emb[train_cls == i].mean(0) for i in range(len(classes))])
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    probe = LogisticRegression(max_iter=2000).fit(train_emb, train_cls)
    single = truth.sum(1) == 1
    scored = {
        "zero-shot (text prompts)": scenes @ text.T,
        "image prototypes": scenes @ protos.T,
        "linear probe (supervised)": probe.decision_function(scenes),
    }
    out = {
        name: {"map": round(mean_average_precision(s, truth), 4), "gap_at_10": round(gap_at_k(s, truth), 4)}
        for name, s in scored.items()
    }
    out["zero-shot, single-drawing scenes only"] = {
        "map": round(mean_average_precision(scored["zero-shot (text prompts)"][single], truth[single]), 4),
        "gap_at_10": round(gap_at_k(scored["zero-shot (text prompts)"][single], truth[single]), 4),
    }
    out["training pictures per class"] = dict(zip(classes, np.bincount(train_cls, minlength=len(classes)).tolist()))
    result = {"model": str(args.model), "scenes": len(scenes), "classes": len(classes), **out}
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
        check_written(args.out)
    require(result, [*scored, "zero-shot, single-drawing scenes only"], "the diagnosis")


if __name__ == "__main__":
    main()
