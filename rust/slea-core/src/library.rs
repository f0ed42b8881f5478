//! library: to be written (see ../../../DESIGN.md in shared).
