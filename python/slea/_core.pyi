"""Type stubs of the private extension module ``slea._core`` (checked by mypy.stubtest in CI).

Each section belongs to one binding file in rust/slea-py/src/; keep them in that order.
"""

from os import PathLike
from typing import Any, TypeAlias, final

import numpy as np
import numpy.typing as npt

__all__ = [  # noqa: RUF022 - grouped by binding file
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
    "StepBatch",
    "compute_advantages",
    #
    # hnsw.rs
    "HnswIndex",
    #
    # embed.rs
    "HASHING_MAX_DIM",
    "hashing_embed",
    "hashing_fingerprint",
    # library.rs
    "LIBRARY_MAX_ABS_SCORE",
    "LIBRARY_SCHEMA_VERSION",
    "SNAPSHOT_FORMAT_VERSION",
    "Library",
    "sanitize_texts",
    "snapshot_info",
    "write_file_atomic",
]

__version__: str

# --- error.rs ---------------------------------------------------------------------------------

class SleaError(Exception): ...
class SnapshotError(SleaError): ...

# --- canon.rs ---------------------------------------------------------------------------------

@final
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

@final
class ObservationClusterer:
    def __new__(
        cls,
        spec: CanonSpec,
        threshold: float,
        max_clusters: int | None,
        bands: int,
        bucket_cap: int,
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
    @property
    def bucket_cap(self) -> int: ...

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
    @property
    def group(self) -> npt.NDArray[np.int64]: ...
    @property
    def episode(self) -> npt.NDArray[np.int64]: ...
    @property
    def step(self) -> npt.NDArray[np.int64]: ...
    @property
    def reward(self) -> npt.NDArray[np.float64]: ...
    @property
    def key(self) -> npt.NDArray[np.uint64]: ...
    @property
    def invalid(self) -> npt.NDArray[np.bool_]: ...
    @property
    def action_key(self) -> npt.NDArray[np.uint64] | None: ...

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

HASHING_MAX_DIM: int

def hashing_embed(texts: list[str], dim: int) -> npt.NDArray[np.float32]: ...
def hashing_fingerprint(dim: int) -> str: ...

# --- library.rs -------------------------------------------------------------------------------

LIBRARY_SCHEMA_VERSION: int
LIBRARY_MAX_ABS_SCORE: float
SNAPSHOT_FORMAT_VERSION: int

_EntryValues: TypeAlias = tuple[
    int, str, str, str, float, tuple[int, ...], int, tuple[int, ...], int, int, int, int,
    str | None, str | None, bytes,
]  # fmt: skip
"""An entry in `slea.Experience`'s field order, the embedding as little-endian float32 bytes."""

@final
class Library:
    def __new__(
        cls,
        *,
        dim: int,
        embedder: str,
        capacity: list[int],
        rate_per_step: list[float],
        novelty_threshold: float,
        fallback_threshold: float,
        max_text_chars: int,
        max_demo_chars: int,
        pool_size: int,
        max_clusters: int,
        max_provenance: int,
        ema_alpha: float | None = None,
    ) -> Library: ...
    @staticmethod
    def load(path: str | PathLike[str]) -> Library: ...
    @staticmethod
    def from_bytes(data: bytes) -> Library: ...
    def to_bytes(self) -> bytes: ...
    def save(self, path: str | PathLike[str]) -> None: ...
    def params_json(self) -> str: ...
    def admit(
        self, candidates: list[Any], embeddings: npt.NDArray[np.float32], iteration: int
    ) -> list[tuple[str, int | None, str, list[int]]]: ...
    def retrieve(
        self,
        cluster_id: int,
        k_strategy: int,
        k_warning: int,
        query: npt.NDArray[np.float32] | None = None,
    ) -> list[_EntryValues] | None: ...
    def retrieve_hits(
        self, cluster_ids: npt.NDArray[np.uint64], k_strategy: int, k_warning: int
    ) -> list[list[_EntryValues] | None]: ...
    def retrieve_fallbacks(
        self,
        cluster_ids: npt.NDArray[np.uint64],
        queries: npt.NDArray[np.float32],
        k_strategy: int,
        k_warning: int,
    ) -> list[list[_EntryValues]]: ...
    def record_outcome(
        self,
        entry_ids: list[int],
        success: bool,
        reward: float | None = None,
        ignore_missing: bool = False,
    ) -> int: ...
    def link(self, cluster_id: int, entry_ids: list[int]) -> int: ...
    def import_entries(
        self, items: list[dict[str, Any]], embeddings: npt.NDArray[np.float32]
    ) -> list[int]: ...
    def get(self, entry_id: int) -> _EntryValues | None: ...
    def remove(self, entry_id: int) -> None: ...
    def entries(self, zone: str | None = None, level: str | None = None) -> list[_EntryValues]: ...
    def linked_clusters(self, entry_id: int) -> list[int]: ...
    def pool(self, cluster_id: int) -> tuple[list[int], list[int]] | None: ...
    def __len__(self) -> int: ...
    @property
    def version(self) -> int: ...
    def stats(self) -> dict[str, Any]: ...

def sanitize_texts(
    texts: list[str], max_chars: int, keep_newlines: bool = False
) -> list[tuple[str | None, str]]: ...
def write_file_atomic(path: str | PathLike[str], data: bytes) -> None: ...
def snapshot_info(path: str | PathLike[str]) -> tuple[str, int, int, list[tuple[str, int]]]: ...
