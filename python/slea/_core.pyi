"""Type stubs of the private extension module ``slea._core`` (checked by mypy.stubtest in CI).

Each section belongs to one binding file in rust/slea-py/src/; keep them in that order.
"""

__all__ = [
    # error.rs
    "SleaError",
    "SnapshotError",
    "__version__",
    #
    # canon.rs
    "CanonSpec",
    # cluster.rs
    "ObservationClusterer",
    # advantage.rs
    #
    # hnsw.rs
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

from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402

class CanonSpec:
    @staticmethod
    def preset(name: str) -> CanonSpec: ...
    @staticmethod
    def presets() -> list[str]: ...
    @staticmethod
    def from_json(json: str) -> CanonSpec: ...
    @staticmethod
    def from_rules_json(json: str) -> CanonSpec: ...
    def to_json(self) -> str: ...
    @property
    def fingerprint(self) -> int: ...
    def canonicalize(self, text: str) -> str: ...
    def structural_hash(self, text: str) -> int: ...
    def simhash(self, text: str) -> int: ...
    def canonicalize_batch(self, texts: list[str] | tuple[str, ...]) -> list[str]: ...
    def structural_hash_batch(
        self, texts: list[str] | tuple[str, ...]
    ) -> npt.NDArray[np.uint64]: ...
    def simhash_batch(self, texts: list[str] | tuple[str, ...]) -> npt.NDArray[np.uint64]: ...

# --- cluster.rs -------------------------------------------------------------------------------

class ObservationClusterer:
    def __new__(
        cls, spec: CanonSpec, threshold: float, max_clusters: int | None, bands: int
    ) -> ObservationClusterer: ...
    def assign(self, text: str) -> int: ...
    def assign_batch(self, texts: list[str] | tuple[str, ...]) -> npt.NDArray[np.uint64]: ...
    def prototype(self, cluster_id: int) -> str: ...
    def size(self, cluster_id: int) -> int: ...
    def contains(self, cluster_id: int) -> bool: ...
    def __len__(self) -> int: ...
    def ids(self) -> npt.NDArray[np.uint64]: ...
    def stats(self) -> dict[str, Any]: ...
    def save(self, path: str) -> None: ...
    @staticmethod
    def load(path: str, spec: CanonSpec | None = None) -> ObservationClusterer: ...
    @property
    def spec(self) -> CanonSpec: ...
    @property
    def threshold(self) -> float: ...
    @property
    def max_clusters(self) -> int | None: ...
    @property
    def bands(self) -> int: ...



# --- advantage.rs -----------------------------------------------------------------------------



# --- hnsw.rs ----------------------------------------------------------------------------------



# --- embed.rs ---------------------------------------------------------------------------------



# --- library.rs -------------------------------------------------------------------------------
