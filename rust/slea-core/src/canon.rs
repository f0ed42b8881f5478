//! canon: to be written (see ../../../DESIGN.md in shared).
