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
    #
    # cluster.rs
    #
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

# --- cluster.rs -------------------------------------------------------------------------------

# --- advantage.rs -----------------------------------------------------------------------------

# --- hnsw.rs ----------------------------------------------------------------------------------

# --- embed.rs ---------------------------------------------------------------------------------

# --- library.rs -------------------------------------------------------------------------------
