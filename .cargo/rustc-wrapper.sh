#!/usr/bin/env bash
# bash, not sh: dash drops environment variables whose names hold a `-`, such as the
# CARGO_BIN_EXE_<bin-name> cargo sets for integration tests.
# Cargo calls: rustc-wrapper.sh <rustc> <args...>. See .cargo/config.toml for why this exists.
rustc="$1"
shift
prev=""
for arg in "$@"; do
    if [ "$prev" = "--crate-name" ] && [ "$arg" = "qdrant_edge" ]; then
        RUSTC_BOOTSTRAP=qdrant_edge exec "$rustc" "$@" -Zcrate-attr='feature(assert_matches)'
    fi
    prev="$arg"
done
exec "$rustc" "$@"
