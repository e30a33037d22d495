//! The `dvid` binary: a thin shell over [`dvid_node::cli`].

/// Serving a chunk allocates and frees megabyte buffers; glibc's allocator maps each one fresh
/// from the kernel (page faults, zeroing) where mimalloc reuses them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    dvid_node::cli::main()
}
