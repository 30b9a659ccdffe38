//! Files and directories: ignore files, binaries, size limits, bad input, inline allows.
