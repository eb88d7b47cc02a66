"""linsteer: find, validate and apply linear reasoning directions in language models.

The flow, one import each::

    import linsteer as ls

    lm = ls.load_model("gemma3-270m")                       # or ls.wrap_model(model, tokenizer)
    acts = ls.read_activations(lm, prompts, labels=labels)  # residual stream, every layer
    vec = ls.extract(acts)                                  # one direction per layer
    with ls.steering(lm, ls.Steer(vec, layers=(6,), strength=0.5, unit="norm")):
        ...                                                 # any forward or generate

See ARCHITECTURE.md for the modules behind these names.
"""

from linsteer.activations import ActivationSet, read_activations
from linsteer.directions import SteeringVector, extract
from linsteer.errors import LinsteerError
from linsteer.extraction import contrast_activations
from linsteer.models import LoadedModel, load_model, wrap_model
from linsteer.prompts import ContrastSet, builtin_contrast, load_benchmark
from linsteer.prompts.spec import contrast_from_spec
from linsteer.setting import Setting
from linsteer.steering import Steer, apply_steering, steering
from linsteer.version import __version__

__all__ = [
    "ActivationSet",
    "ContrastSet",
    "LinsteerError",
    "LoadedModel",
    "Setting",
    "Steer",
    "SteeringVector",
    "__version__",
    "apply_steering",
    "builtin_contrast",
    "contrast_activations",
    "contrast_from_spec",
    "extract",
    "load_benchmark",
    "load_model",
    "read_activations",
    "steering",
    "wrap_model",
]
