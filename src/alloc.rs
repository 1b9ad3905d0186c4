//! The process allocator: mimalloc. It is declared in the library, not in `main.rs`, so that
//! the tests and the benches run on the allocator the binary runs on: the parse bench measured
//! against glibc malloc would time an allocator the job does not use.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
