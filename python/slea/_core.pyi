"""Type stubs of the private extension module ``slea._core`` (checked by mypy.stubtest in CI).

Each section belongs to one binding file in rust/slea-py/src/; keep them in that order.
"""

__all__ = [  # noqa: RUF022 (one section per binding file, not one sorted list)
    # error.rs
    "SleaError",
    "SnapshotError",
    "__version__",
    #
    # canon.rs
    #
    # cluster.rs
    #
    # advantage.rs
    "StepBatch",
    "compute_advantages",
    #
    # hnsw.rs
    #
    # embed.rs
    #
    # library.rs
    #
]

from typing import final

import numpy as np
import numpy.typing as npt

__version__: str

# --- error.rs ---------------------------------------------------------------------------------

class SleaError(Exception): ...
class SnapshotError(SleaError): ...

# --- canon.rs ---------------------------------------------------------------------------------

# --- cluster.rs -------------------------------------------------------------------------------

# --- advantage.rs -----------------------------------------------------------------------------

@final
class StepBatch:
    def __new__(
        cls,
        group: npt.NDArray[np.int64],
        episode: npt.NDArray[np.int64],
        step: npt.NDArray[np.int64],
        reward: npt.NDArray[np.float64],
        key: npt.NDArray[np.uint64],
        invalid: npt.NDArray[np.bool_],
        action_key: npt.NDArray[np.uint64] | None = None,
    ) -> StepBatch: ...
    def __len__(self) -> int: ...
    @property
    def n_episodes(self) -> int: ...
    @property
    def n_groups(self) -> int: ...
    @property
    def has_action_key(self) -> bool: ...

def compute_advantages(
    batch: StepBatch,
    estimator: str,
    gamma: float,
    mode: str,
    step_weight: float,
    invalid_penalty: float,
    eps: float,
) -> tuple[
    npt.NDArray[np.float32],
    npt.NDArray[np.float32],
    npt.NDArray[np.float32],
    npt.NDArray[np.float32],
]: ...

# --- hnsw.rs ----------------------------------------------------------------------------------

# --- embed.rs ---------------------------------------------------------------------------------

# --- library.rs -------------------------------------------------------------------------------
