//! cluster: to be written (see ../../../DESIGN.md in shared).
