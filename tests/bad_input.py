"""Hypothesis strategies for bad text input, shared by the canon and clustering tests."""

from __future__ import annotations

from hypothesis import strategies as st

not_str = (
    st.none()
    | st.integers()
    | st.floats()
    | st.binary(max_size=8)
    | st.lists(st.text(max_size=3), max_size=2)
    | st.tuples(st.text(max_size=3))
)
"""Values that are not ``str``."""

with_surrogate = st.tuples(
    st.text(max_size=20), st.characters(categories=["Cs"]), st.text(max_size=20)
).map("".join)
"""``str`` values holding a lone surrogate somewhere."""

bad_texts = not_str | with_surrogate
"""Anything an observation may not be."""
