//! The `stele` command-line tool (see the library of the same name).
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    stele::main()
}
