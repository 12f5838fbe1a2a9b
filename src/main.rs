//! The `builder` binary: the library does everything; this runs it.

fn main() -> std::process::ExitCode {
    builder::main()
}
