"""Type stubs of the private extension module ``slea._core`` (checked by mypy.stubtest in CI).

Each section belongs to one binding file in rust/slea-py/src/; keep them in that order.
"""

from typing import Any, final

import numpy as np
import numpy.typing as npt

__all__ = [  # noqa: RUF022 - grouped by binding file
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
    "HnswIndex",
    #
    # embed.rs
    #
    # library.rs
    #
]

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

@final
class HnswIndex:
    def __new__(
        cls,
        dim: int,
        m: int,
        ef_construction: int,
        ef: int,
        seed: int,
        flat_threshold: int,
        max_elements: int | None = None,
    ) -> HnswIndex: ...
    def add(
        self,
        ids: npt.NDArray[np.uint64],
        vectors: npt.NDArray[np.float32],
        tags: npt.NDArray[np.uint32],
        upsert: bool,
    ) -> None: ...
    def remove(self, ids: npt.NDArray[np.uint64]) -> None: ...
    def search(
        self,
        queries: npt.NDArray[np.float32],
        k: int,
        ef: int | None = None,
        allowed: npt.NDArray[np.uint32] | None = None,
        threads: int = 1,
    ) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]]: ...
    def search_one(
        self,
        query: npt.NDArray[np.float32],
        k: int,
        ef: int | None = None,
        allowed: npt.NDArray[np.uint32] | None = None,
    ) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]]: ...
    def __len__(self) -> int: ...
    def contains(self, id: int) -> bool: ...
    def ids(self) -> npt.NDArray[np.uint64]: ...
    def set_ef(self, ef: int) -> None: ...
    def params(self) -> tuple[int, int, int, int, int, int, int | None]: ...
    def memory_bytes(self) -> int: ...
    def stats(self) -> dict[str, Any]: ...
    def to_bytes(self) -> bytes: ...
    @staticmethod
    def from_bytes(data: bytes) -> HnswIndex: ...


# --- embed.rs ---------------------------------------------------------------------------------

# --- library.rs -------------------------------------------------------------------------------
