//! Integration tests of `custos-audit`: file devices written and read back by `verify`.

mod device;
