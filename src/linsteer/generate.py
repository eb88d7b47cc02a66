"""Side-by-side steered and unsteered generation for one prompt."""

from __future__ import annotations

from pathlib import Path

import torch

from linsteer.directions import SteeringVector
from linsteer.models import load_model
from linsteer.steering import Steer, steering


def side_by_side(prompt: str, *, vector: Path, model: str, layer: int, strength: float,
                 operator: str = "add", unit: str = "norm", max_new_tokens: int = 48,
                 dtype: str = "auto", device: str | None = None,
                 trust_remote_code: bool = False) -> str:
    vec = SteeringVector.load(vector)
    lm = load_model(model, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
    enc = lm.tokenizer([prompt], return_tensors="pt")  # type: ignore[operator]
    enc = {k: v.to(lm.device) for k, v in enc.items()}
    width = enc["input_ids"].shape[1]

    def generate() -> str:
        with torch.inference_mode():
            out = lm.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,  # type: ignore[operator]
                                    pad_token_id=lm.tokenizer.pad_token_id)  # type: ignore[attr-defined]
        return str(lm.tokenizer.decode(out[0, width:], skip_special_tokens=True))  # type: ignore[attr-defined]

    plain = generate()
    with steering(lm, Steer(vec, (layer,), operator, strength, unit)):  # type: ignore[arg-type]
        steered = generate()
    scale = " x norm" if unit == "norm" and operator == "add" else ""
    label = f"{operator} {strength:g}{scale} at layer {layer}"
    return f"--- unsteered ---\n{plain}\n--- steered ({label}) ---\n{steered}"
