//! Configuration files and `REGISTRY_*` variables. The input is split at the first NUL: the
//! YAML file before it, then `NAME=value` lines applied as the environment. (`listen_addr` is
//! left out: it resolves host names, which is I/O, not parsing.)
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (yaml, env) = text.split_once('\0').unwrap_or((&text, ""));
    let env: Vec<(String, String)> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (format!("REGISTRY_{k}"), v.to_string()))
        .collect();
    for file in [Some(yaml), None] {
        if let Ok(loaded) = wharf::config::load_from(file, &env) {
            let _ = loaded.config.redacted_yaml();
            let _ = loaded.config.root_directory();
        }
    }
    let _ = wharf::config::duration_str::parse_go(yaml);
});
