"""Side-by-side steered and unsteered generation for one prompt.

On a GPU both answers come from one compiled steered generator (:mod:`linsteer.generate.compiled`), the
prompt twice in one batch with strengths 0 and ``strength``; elsewhere from ``generate`` with
the steering hooks (also, after a one-line notice, when the compiled path cannot run on the
model). ``fast`` forces either path.
"""

from __future__ import annotations

from pathlib import Path

import torch

from linsteer.extract.vector import SteeringVector
from linsteer.generate.compiled import generate_steered, use_compiled
from linsteer.model.load import load_model
from linsteer.steer.hooks import Steer, steering
from linsteer.steer.setting import strength_label


def side_by_side(prompt: str, *, vector: Path, model: str, layer: int, strength: float,
                 operator: str = "add", unit: str = "norm", max_new_tokens: int = 48,
                 dtype: str = "auto", device: str | None = None,
                 trust_remote_code: bool = False, fast: bool | None = None) -> str:
    vec = SteeringVector.load(vector)
    lm = load_model(model, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
    label = f"{operator} {strength_label(strength, unit if operator == 'add' else 'raw')} at layer {layer}"
    if use_compiled(lm, fast):
        both = Steer(vec, (layer,), operator, (0.0, strength), unit)  # type: ignore[arg-type]
        plain_out, steered_out = generate_steered(lm, [prompt, prompt], steer=both,
                                                  max_new_tokens=max_new_tokens, batch_size=2)
        plain, steered = plain_out.text, steered_out.text
    else:
        enc = lm.tokenizer([prompt], return_tensors="pt")
        enc = {k: v.to(lm.device) for k, v in enc.items()}
        width = enc["input_ids"].shape[1]

        def generate() -> str:
            with torch.inference_mode():
                out = lm.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,  # type: ignore[operator]
                                        pad_token_id=lm.tokenizer.pad_token_id)
            return str(lm.tokenizer.decode(out[0, width:], skip_special_tokens=True))

        plain = generate()
        with steering(lm, Steer(vec, (layer,), operator, strength, unit)):  # type: ignore[arg-type]
            steered = generate()
    return f"--- unsteered ---\n{plain}\n--- steered ({label}) ---\n{steered}"
