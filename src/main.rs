fn main() -> std::process::ExitCode {
    tune_allocator();
    wharf::cli::main()
}

/// glibc's malloc defaults suit a few long-lived threads, not a server whose blocking pool
/// comes and goes with the load: every thread may get an arena of its own (up to eight per
/// core), and after the first large buffer is freed the mmap threshold climbs to its size, so
/// later upload and download buffers land in those arenas and stay there, fragmented. Under a
/// sustained mix of pushes and pulls that shows as resident memory creeping up for minutes.
/// Two arenas keep contention low on the async workers; a fixed mmap threshold sends every
/// large buffer straight back to the kernel when it is freed; a fixed trim threshold returns
/// freed space at the top of a heap promptly. `MALLOC_ARENA_MAX` etc. in the environment are
/// applied by glibc before this runs and are overridden here only where unset.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    const ARENAS: libc::c_int = 2;
    const MMAP_THRESHOLD: libc::c_int = 128 * 1024;
    const TRIM_THRESHOLD: libc::c_int = 512 * 1024;
    let unset = |var: &str| std::env::var_os(var).is_none();
    // mallopt only fails for an unknown parameter or an out-of-range value; either way the
    // defaults stay, which is correct, just hungrier.
    unsafe {
        if unset("MALLOC_ARENA_MAX") {
            libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        }
        if unset("MALLOC_MMAP_THRESHOLD_") {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        }
        if unset("MALLOC_TRIM_THRESHOLD_") {
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}
