//! The `dvid` binary: a thin shell over [`dvid_node::cli`].

fn main() -> std::process::ExitCode {
    dvid_node::cli::main()
}
