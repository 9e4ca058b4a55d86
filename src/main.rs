fn main() -> std::process::ExitCode {
    wharf::alloc::tune();
    wharf::cli::main()
}
