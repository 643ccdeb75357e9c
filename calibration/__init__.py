"""Hardware, models and quantization, and the profiles that price engine iterations.

Nothing here imports ``sim`` or ``workloads``: the engine depends on this package, never the
other way round.
"""

from calibration.catalog import GPUS, MODELS, QUANTIZATIONS
from calibration.explicit import ExplicitProfile
from calibration.profile import BatchShape, Profile, Provenance, ReplicaSpec, StepCost
from calibration.roofline import RooflineProfile
from calibration.spec import ExplicitProfileSpec, ProfileSpec, RooflineProfileSpec, build_profile

__all__ = [
    "GPUS", "MODELS", "QUANTIZATIONS", "BatchShape", "ExplicitProfile", "ExplicitProfileSpec", "Profile",
    "ProfileSpec", "Provenance", "ReplicaSpec", "RooflineProfile", "RooflineProfileSpec", "StepCost",
    "build_profile",
]
