"""linsteer: find, validate and apply linear reasoning directions in language models.

The flow, one import each::

    import linsteer as ls

    lm = ls.load_model("gemma3-270m")                       # or ls.wrap_model(model, tokenizer)
    acts = ls.read_activations(lm, prompts, labels=labels)  # residual stream, every layer
    vec = ls.extract(acts)                                  # one direction per layer
    with ls.steering(lm, ls.Steer(vec, layers=(6,), strength=0.5, unit="norm")):
        ...                                                 # any forward or generate
    with ls.lirefs_intervention(lm, vec, layer=5, scale=0.1):  # the seed's: every block steered
        ...

See ARCHITECTURE.md for the modules behind these names.
"""

from linsteer.errors import LinsteerError
from linsteer.extract.actset import ActivationSet
from linsteer.extract.contrast import contrast_activations
from linsteer.extract.methods import extract
from linsteer.extract.read import read_activations
from linsteer.extract.vector import SteeringVector
from linsteer.model.load import LoadedModel, load_model, wrap_model
from linsteer.prompts.benchmarks import load_benchmark
from linsteer.prompts.contrast import builtin_contrast
from linsteer.prompts.items import ContrastSet
from linsteer.prompts.spec import contrast_from_spec
from linsteer.steer.hooks import Steer, apply_steering, steering
from linsteer.steer.lirefs import lirefs_intervention
from linsteer.steer.setting import Setting
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
    "lirefs_intervention",
    "load_benchmark",
    "load_model",
    "read_activations",
    "steering",
    "wrap_model",
]
