"""Print the confound diagnostics of several built-in contrasts on one model, side by side.

    PYTHONPATH=src python benchmarks/confounds_by_contrast.py [MODEL] [N_PER_CLASS]

For each contrast: held-out probe accuracy (5-fold) on the token embeddings at the read position
(layer -1, last token), length only, bag of tokens, the best residual-stream layer, and whether
the surface-confound rule fires. Default model gemma3-270m, 32 prompts per class.
"""

from __future__ import annotations

import sys

from linsteer.diagnostics.confounds import model_confounds
from linsteer.extract.contrast import contrast_activations
from linsteer.model.load import load_model
from linsteer.prompts.formats import get_format
from linsteer.prompts.spec import contrast_from_spec

CONTRASTS = ("builtin", "matched", "mmlu_pro-lite")


def main() -> None:
    model = sys.argv[1] if len(sys.argv) > 1 else "gemma3-270m"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    lm = load_model(model)
    fmt = get_format("zero_shot")
    print(f"model {model}, {n} per class, zero_shot format, last token, 5-fold held-out accuracy")
    print(f"{'contrast':<15}{'embed(-1)':>10}{'emb-mean':>9}{'length':>8}{'bag':>8}"
          f"{'best layer':>12}{'probe':>7}"
          f"{'shuffled':>10}  surface_confound")
    for spec in CONTRASTS:
        contrast = contrast_from_spec(spec, n, 0)
        acts = contrast_activations(lm, contrast, progress=False)
        prompts = [fmt.render(it.text) for it in contrast.items]
        found = model_confounds(lm, acts, prompts, "last").to_json()
        print(f"{spec:<15}{found['embedding_probe_accuracy']:>10.2f}"
              f"{found['embedding_mean_probe_accuracy']:>9.2f}{found['length_only_accuracy']:>8.2f}"
              f"{found['bag_of_tokens_accuracy']:>8.2f}{found['best_layer']:>12}"
              f"{found['best_probe_accuracy']:>7.2f}{found['shuffled_accuracy']:>10.2f}  "
              f"{found['surface_confound']}")
        print("  per layer:", " ".join(f"{k}:{v:.2f}" for k, v in found["probe_accuracy"].items()))


if __name__ == "__main__":
    main()
