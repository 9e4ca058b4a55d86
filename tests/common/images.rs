//! Test content and the command-line tools that move it: one command runner, random tar layers,
//! OCI image layouts written straight to disk, `docker build` contexts, skopeo with a private
//! configuration, and readers that verify what a client pulled back.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rand::RngCore;
use serde_json::{json, Value};

use super::sha256_digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

// ---------------------------------------------------------------------------------------------
// Running commands

/// One line describing a command, for failure messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion and returns its output whatever the exit status.
pub fn run_unchecked(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null());
    let started = Instant::now();
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot start `{}`: {e}", describe(cmd)));
    eprintln!("[{:.1}s] {} -> {}", started.elapsed().as_secs_f64(), describe(cmd), out.status);
    out
}

/// Runs `cmd` with `input` on its standard input (a password for `--password-stdin`) and
/// panics, printing its output, unless it exits successfully.
pub fn run_with_input(cmd: &mut Command, input: &str) -> Output {
    let out = run_with_input_unchecked(cmd, input);
    succeeded(cmd, out)
}

/// `run_with_input` whatever the exit status (a login that must fail).
pub fn run_with_input_unchecked(cmd: &mut Command, input: &str) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", describe(cmd)));
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    eprintln!("{} -> {}", describe(cmd), out.status);
    out
}

/// Runs `cmd` and panics, printing its stdout and stderr, unless it exits successfully.
pub fn run(cmd: &mut Command) -> Output {
    let out = run_unchecked(cmd);
    succeeded(cmd, out)
}

/// `out`, after panicking with it unless `cmd` exited successfully.
fn succeeded(cmd: &Command, out: Output) -> Output {
    if !out.status.success() {
        panic!(
            "`{}` failed with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Runs `cmd` and returns its stdout as text (trimmed), panicking on failure.
pub fn run_text(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).trim().to_string()
}

/// Asks a process we started to stop with SIGTERM, then kills it if it is still there after
/// `grace`. Only ever signals the PID of our own child.
pub fn stop_child(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    signal_pid(child.id(), libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends `sig` to one process id (no process groups, no names).
pub fn signal_pid(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        if pid > 0 {
            // SAFETY: kill(2) with a positive pid has no memory-safety preconditions.
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }
}

/// True while a process with this id exists.
pub fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Polls `check` every 50 ms until it is true or `limit` passes.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A temporary directory directly under /tmp with a short name, so unix socket paths inside it
/// stay well below the 108-byte limit whatever TMPDIR says.
pub fn short_tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(prefix).tempdir_in("/tmp").expect("tempdir in /tmp")
}

// ---------------------------------------------------------------------------------------------
// Content

pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

/// A ustar archive of regular files (mode 0644, owner 0:0, mtime 0), written by hand so the
/// bytes are deterministic and no external `tar` is needed.
pub fn tar_archive(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in files {
        out.extend_from_slice(&ustar_header(name, data.len()));
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    // Two zero blocks end the archive.
    out.resize(out.len() + 1024, 0);
    out
}

fn ustar_header(name: &str, size: usize) -> [u8; 512] {
    assert!(name.len() < 100, "tar names here are short");
    let mut h = [0u8; 512];
    let put = |h: &mut [u8; 512], at: usize, s: &[u8]| h[at..at + s.len()].copy_from_slice(s);
    put(&mut h, 0, name.as_bytes());
    put(&mut h, 100, b"0000644\0");
    put(&mut h, 108, b"0000000\0");
    put(&mut h, 116, b"0000000\0");
    put(&mut h, 124, format!("{size:011o}\0").as_bytes());
    put(&mut h, 136, b"00000000000\0");
    put(&mut h, 156, b"0");
    put(&mut h, 257, b"ustar\0");
    put(&mut h, 263, b"00");
    // The checksum is computed with its own field read as eight spaces.
    put(&mut h, 148, b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    put(&mut h, 148, format!("{sum:06o}\0 ").as_bytes());
    h
}

/// gzip-compresses with the system `gzip -n` (no name or timestamp, so output is stable).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .args(["-n", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn gzip");
    let mut stdin = child.stdin.take().expect("gzip stdin");
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("gzip output");
    writer.join().expect("gzip writer").expect("write to gzip");
    assert!(out.status.success(), "gzip failed");
    out.stdout
}

/// The digests a manifest or index refers to: child manifests, config and layers (and subject).
pub fn referenced_digests(manifest: &[u8]) -> Vec<String> {
    let v: Value = serde_json::from_slice(manifest).expect("manifest is JSON");
    let mut out = Vec::new();
    for key in ["manifests", "layers"] {
        if let Some(list) = v[key].as_array() {
            out.extend(list.iter().filter_map(|d| d["digest"].as_str().map(String::from)));
        }
    }
    if let Some(d) = v["config"]["digest"].as_str() {
        out.push(d.to_string());
    }
    out
}

/// True when the document is an index / manifest list (it has `manifests`, not `layers`).
pub fn is_index(manifest: &[u8]) -> bool {
    let v: Value = serde_json::from_slice(manifest).expect("manifest is JSON");
    v.get("manifests").is_some()
}

// ---------------------------------------------------------------------------------------------
// OCI image layouts

/// One image written into a layout: its manifest bytes and every blob it references.
#[derive(Clone, Debug)]
pub struct OciImage {
    pub manifest: Vec<u8>,
    pub digest: String,
    pub config: String,
    pub layers: Vec<String>,
}

impl OciImage {
    pub fn blob_digests(&self) -> Vec<String> {
        let mut v = vec![self.config.clone()];
        v.extend(self.layers.iter().cloned());
        v
    }
}

/// A multi-arch index and the images it lists.
#[derive(Clone, Debug)]
pub struct OciIndex {
    pub bytes: Vec<u8>,
    pub digest: String,
    pub images: Vec<OciImage>,
}

/// An OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/...`) that skopeo can
/// read with `oci:DIR:TAG`.
pub struct OciLayout {
    pub dir: PathBuf,
    refs: Vec<Value>,
}

impl OciLayout {
    pub fn create(dir: &Path) -> OciLayout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).expect("create layout");
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).expect("write oci-layout");
        let layout = OciLayout {
            dir: dir.to_path_buf(),
            refs: Vec::new(),
        };
        layout.write_index();
        layout
    }

    /// Stores bytes as a blob and returns their digest.
    pub fn put_blob(&self, bytes: &[u8]) -> String {
        let digest = sha256_digest(bytes);
        let hex = digest.trim_start_matches("sha256:");
        std::fs::write(self.dir.join("blobs/sha256").join(hex), bytes).expect("write blob");
        digest
    }

    /// Writes an image for `arch` with `layers` gzip layers of random files. (Plain tar layers
    /// would not travel unchanged: skopeo compresses them when pushing to a registry.)
    pub fn add_image(&self, arch: &str, layers: usize) -> OciImage {
        let sizes: Vec<usize> = (0..layers).map(|i| 1500 + 700 * i).collect();
        self.add_image_sized(arch, &sizes)
    }

    /// Like `add_image`, with one layer per entry of `sizes` holding that many random bytes.
    pub fn add_image_sized(&self, arch: &str, sizes: &[usize]) -> OciImage {
        let mut descriptors = Vec::new();
        let mut diff_ids = Vec::new();
        let mut digests = Vec::new();
        for (i, &size) in sizes.iter().enumerate() {
            let data = random_bytes(size);
            let name = format!("layer{i}/{arch}-{i}.bin");
            let tar = tar_archive(&[(name.as_str(), &data)]);
            diff_ids.push(sha256_digest(&tar));
            let bytes = gzip(&tar);
            let digest = self.put_blob(&bytes);
            descriptors.push(json!({"mediaType": OCI_LAYER_GZIP, "digest": digest, "size": bytes.len()}));
            digests.push(digest);
        }
        let config = serde_json::to_vec(&json!({
            "architecture": arch,
            "os": "linux",
            "config": {"Env": [format!("WHARF_TEST={}", hex::encode(random_bytes(8)))]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .expect("config json");
        let config_digest = self.put_blob(&config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": descriptors,
        }))
        .expect("manifest json");
        let digest = self.put_blob(&manifest);
        OciImage {
            manifest,
            digest,
            config: config_digest,
            layers: digests,
        }
    }

    /// Writes an index listing one image per `(os/arch)` platform given.
    pub fn add_index(&self, arches: &[&str], layers: usize) -> OciIndex {
        let images: Vec<OciImage> = arches.iter().map(|a| self.add_image(a, layers)).collect();
        let entries: Vec<Value> = images
            .iter()
            .zip(arches)
            .map(|(img, arch)| {
                json!({
                    "mediaType": OCI_MANIFEST,
                    "digest": img.digest,
                    "size": img.manifest.len(),
                    "platform": {"architecture": arch, "os": "linux"},
                })
            })
            .collect();
        let bytes = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": entries,
        }))
        .expect("index json");
        let digest = self.put_blob(&bytes);
        OciIndex { bytes, digest, images }
    }

    /// Names a manifest or index in `index.json` so `oci:DIR:TAG` finds it.
    pub fn tag(&mut self, tag: &str, media_type: &str, digest: &str, size: usize) {
        self.refs.push(json!({
            "mediaType": media_type,
            "digest": digest,
            "size": size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }));
        self.write_index();
    }

    pub fn tag_image(&mut self, tag: &str, img: &OciImage) {
        self.tag(tag, OCI_MANIFEST, &img.digest.clone(), img.manifest.len());
    }

    pub fn tag_index(&mut self, tag: &str, idx: &OciIndex) {
        self.tag(tag, OCI_INDEX, &idx.digest.clone(), idx.bytes.len());
    }

    fn write_index(&self) {
        let index = json!({"schemaVersion": 2, "manifests": self.refs});
        std::fs::write(self.dir.join("index.json"), serde_json::to_vec(&index).unwrap()).expect("write index.json");
    }

    /// `oci:DIR:TAG` for skopeo.
    pub fn reference(&self, tag: &str) -> String {
        format!("oci:{}:{tag}", self.dir.display())
    }
}

/// What a client wrote into a directory, each blob checked against its name: an OCI layout
/// (`blobs/sha256/<hex>` plus tags in `index.json`) or skopeo's `dir:` transport (`manifest.json`,
/// `<hex>.manifest.json` for list entries, `<hex>` for blobs).
#[derive(Debug, Default)]
pub struct PulledContent {
    /// The top-level manifest bytes (`dir:`), or the manifest `index.json` names (OCI layout).
    pub manifest: Vec<u8>,
    /// Every blob and child manifest by digest, verified.
    pub blobs: BTreeMap<String, Vec<u8>>,
    /// Tag → digest from an OCI layout's `index.json`.
    pub tags: BTreeMap<String, String>,
}

impl PulledContent {
    /// Reads an OCI layout; `manifest` is the one tagged `tag`.
    pub fn read_oci_layout(dir: &Path, tag: &str) -> PulledContent {
        let mut out = PulledContent::default();
        let blobs_dir = dir.join("blobs/sha256");
        for entry in std::fs::read_dir(&blobs_dir).expect("read layout blobs") {
            let path = entry.expect("dir entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            out.insert_verified(&format!("sha256:{name}"), std::fs::read(&path).unwrap());
        }
        let index: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).expect("index.json")).expect("index.json is JSON");
        for m in index["manifests"].as_array().expect("index.json manifests") {
            if let Some(name) = m["annotations"]["org.opencontainers.image.ref.name"].as_str() {
                let digest = m["digest"].as_str().expect("digest").to_string();
                out.tags.insert(name.to_string(), digest);
            }
        }
        let digest = out
            .tags
            .get(tag)
            .unwrap_or_else(|| panic!("layout {} has no tag {tag}", dir.display()));
        out.manifest = out.blobs[digest].clone();
        out
    }

    /// Reads skopeo's `dir:` transport output.
    pub fn read_dir_transport(dir: &Path) -> PulledContent {
        let mut out = PulledContent::default();
        for entry in std::fs::read_dir(dir).expect("read dir: copy") {
            let path = entry.expect("dir entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&path).unwrap();
            if name == "manifest.json" {
                out.manifest = bytes;
            } else if let Some(hex) = name.strip_suffix(".manifest.json") {
                out.insert_verified(&format!("sha256:{hex}"), bytes);
            } else if name.len() == 64 && name.chars().all(|c| c.is_ascii_hexdigit()) {
                out.insert_verified(&format!("sha256:{name}"), bytes);
            }
        }
        assert!(!out.manifest.is_empty(), "no manifest.json in {}", dir.display());
        out
    }

    fn insert_verified(&mut self, digest: &str, bytes: Vec<u8>) {
        assert_eq!(sha256_digest(&bytes), digest, "pulled blob content does not match its digest");
        self.blobs.insert(digest.to_string(), bytes);
    }

    /// Asserts the pulled top manifest is byte-identical to `expected` and that every manifest,
    /// config and layer below it arrived with the same bytes as `source` holds.
    pub fn assert_same_tree(&self, expected: &[u8], source: &dyn Fn(&str) -> Vec<u8>) {
        assert_eq!(
            sha256_digest(&self.manifest),
            sha256_digest(expected),
            "pulled manifest differs from the pushed one:\n{}\nvs\n{}",
            String::from_utf8_lossy(&self.manifest),
            String::from_utf8_lossy(expected)
        );
        let mut manifests = vec![expected.to_vec()];
        for child in child_manifests(expected) {
            let bytes = self.assert_blob(&child, source);
            manifests.push(bytes);
        }
        let mut compared = 0;
        for m in &manifests {
            for d in referenced_digests(m) {
                if !child_manifests(m).contains(&d) {
                    self.assert_blob(&d, source);
                    compared += 1;
                }
            }
        }
        assert!(compared >= 2, "the image tree should reference a config and layers");
    }

    fn assert_blob(&self, digest: &str, source: &dyn Fn(&str) -> Vec<u8>) -> Vec<u8> {
        let want = source(digest);
        let got = self.blobs.get(digest).unwrap_or_else(|| panic!("{digest} was not pulled back"));
        assert_eq!(got, &want, "{digest} came back with different bytes");
        want
    }
}

/// The digests of the manifests an index lists (empty for an image manifest).
pub fn child_manifests(manifest: &[u8]) -> Vec<String> {
    let v: Value = serde_json::from_slice(manifest).expect("manifest is JSON");
    v["manifests"]
        .as_array()
        .map(|l| l.iter().filter_map(|d| d["digest"].as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// Reads a blob from an OCI layout by digest.
pub fn layout_blob(dir: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.trim_start_matches("sha256:");
    std::fs::read(dir.join("blobs/sha256").join(hex)).unwrap_or_else(|e| panic!("blob {digest} not in layout {}: {e}", dir.display()))
}

// ---------------------------------------------------------------------------------------------
// docker build contexts

/// Writes a `FROM scratch` build context with one `COPY` (hence one layer) per random file.
pub fn docker_context(dir: &Path, layers: usize) {
    let sizes: Vec<usize> = (0..layers).map(|i| 2000 + 900 * i).collect();
    docker_context_sized(dir, &sizes);
}

/// As `docker_context`, one layer of random bytes per size (random, so gzip cannot shrink it).
pub fn docker_context_sized(dir: &Path, sizes: &[usize]) {
    let mut dockerfile = String::from("FROM scratch\n");
    for (i, size) in sizes.iter().enumerate() {
        let name = format!("file{i}.bin");
        std::fs::write(dir.join(&name), random_bytes(*size)).expect("write context file");
        dockerfile.push_str(&format!("COPY {name} /layer{i}/{name}\n"));
    }
    std::fs::write(dir.join("Dockerfile"), dockerfile).expect("write Dockerfile");
}

/// Writes a build context that adds one random layer on top of `base`.
pub fn docker_context_on(dir: &Path, base: &str) {
    std::fs::write(dir.join("extra.bin"), random_bytes(4096)).expect("write context file");
    std::fs::write(dir.join("Dockerfile"), format!("FROM {base}\nCOPY extra.bin /extra/extra.bin\n")).expect("write Dockerfile");
}

// ---------------------------------------------------------------------------------------------
// skopeo

/// Pushes a one-layer linux/amd64 image to `dest` (`docker://HOST/REPO:TAG`) with skopeo as
/// `creds` (`user:password`), `tls` being skopeo's destination TLS options (e.g.
/// `--dest-cert-dir DIR`); returns its config digest, the image ID a pull reports.
pub fn push_one_layer_image(dest: &str, creds: &str, tls: &[&str]) -> String {
    let layout_dir = tempfile::tempdir().unwrap();
    let mut layout = OciLayout::create(layout_dir.path());
    let img = layout.add_image("amd64", 1);
    layout.tag_image("v1", &img);
    let policy = layout_dir.path().join("policy.json");
    std::fs::write(&policy, br#"{"default":[{"type":"insecureAcceptAnything"}]}"#).unwrap();
    run(Command::new("skopeo")
        .arg("--policy")
        .arg(&policy)
        .args(["copy", "--dest-creds", creds])
        .args(tls)
        .arg(layout.reference("v1"))
        .arg(dest));
    img.config
}

/// skopeo with its own trust policy, empty auth file and empty registries.d, so nothing from the
/// host's containers configuration or credentials takes part.
pub struct Skopeo {
    dir: tempfile::TempDir,
}

impl Skopeo {
    /// None (after printing SKIP) when skopeo is missing outside CI.
    pub fn new() -> Option<Skopeo> {
        if !super::require_tool("skopeo") {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("policy.json"),
            br#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("auth.json"), br#"{"auths":{}}"#).unwrap();
        std::fs::create_dir(dir.path().join("registries.d")).unwrap();
        Some(Skopeo { dir })
    }

    pub fn auth_file(&self) -> PathBuf {
        self.dir.path().join("auth.json")
    }

    /// `skopeo --policy .. --registries.d .. <sub> --authfile ..`, with plain HTTP allowed.
    pub fn cmd(&self, sub: &str) -> Command {
        let mut c = Command::new("skopeo");
        c.arg("--policy")
            .arg(self.dir.path().join("policy.json"))
            .arg("--registries.d")
            .arg(self.dir.path().join("registries.d"))
            .arg(sub)
            .arg("--authfile")
            .arg(self.auth_file())
            .env("REGISTRY_AUTH_FILE", self.auth_file());
        if sub == "copy" {
            c.args(["--src-tls-verify=false", "--dest-tls-verify=false"]);
        } else {
            c.arg("--tls-verify=false");
        }
        c
    }

    pub fn copy(&self, src: &str, dst: &str, extra: &[&str]) -> Output {
        run(self.cmd("copy").args(extra).arg(src).arg(dst))
    }

    /// The manifest bytes exactly as the registry serves them.
    pub fn inspect_raw(&self, image: &str) -> Vec<u8> {
        run(self.cmd("inspect").arg("--raw").arg(image)).stdout
    }

    /// The tags `skopeo list-tags` reports for `docker://HOST/REPO`.
    pub fn list_tags(&self, repo: &str) -> Vec<String> {
        let out = run(self.cmd("list-tags").arg(repo));
        let v: Value = serde_json::from_slice(&out.stdout).expect("list-tags prints JSON");
        let mut tags: Vec<String> = v["Tags"]
            .as_array()
            .map(|a| a.iter().filter_map(|t| t.as_str().map(String::from)).collect())
            .unwrap_or_default();
        tags.sort();
        tags
    }

    pub fn delete(&self, image: &str) -> Output {
        run_unchecked(self.cmd("delete").arg(image))
    }

    pub fn inspect_unchecked(&self, image: &str) -> Output {
        run_unchecked(self.cmd("inspect").arg("--raw").arg(image))
    }

    /// Copies a two-arch index (two layers per image) in to `into` (`docker://HOST/REPO:TAG`)
    /// and back out of `out_of` (the same image through another server), and checks that every
    /// digest of the tree came back with its bytes.
    pub fn copy_index_through(&self, into: &str, out_of: &str) {
        let tmp = tempfile::tempdir().unwrap();
        let mut src = OciLayout::create(&tmp.path().join("src"));
        let idx = src.add_index(&["amd64", "arm64"], 2);
        src.tag_index("v1", &idx);
        self.copy(&src.reference("v1"), into, &["--all"]);
        let back = tmp.path().join("back");
        self.copy(out_of, &format!("oci:{}:v1", back.display()), &["--all"]);
        let pulled = PulledContent::read_oci_layout(&back, "v1");
        assert_eq!(pulled.tags["v1"], idx.digest);
        pulled.assert_same_tree(&idx.bytes, &|d| layout_blob(&src.dir, d));
    }
}

// ---------------------------------------------------------------------------------------------
// Plain HTTP reads, for checking what a registry (wharf or distribution) serves after a client ran

/// Accept header listing every manifest type, as pulling clients send it.
pub const ACCEPT_ALL_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// What curl gets for `url` following redirects (to a presigned or SAS URL on the object
/// store), with `range` (`FIRST-LAST`) if any.
pub fn curl_follow(url: &str, range: Option<&str>) -> Vec<u8> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--fail", "-L", "--max-time", "60"]);
    if let Some(r) = range {
        cmd.args(["-r", r]);
    }
    run(cmd.arg(url)).stdout
}

/// A `Location` without its host: the same upload session, asked of whichever replica a client
/// (or a load balancer) sends it to.
pub fn on_any_replica(location: &str) -> String {
    let url = reqwest::Url::parse(location).unwrap_or_else(|e| panic!("Location {location}: {e}"));
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

pub struct HttpResp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl HttpResp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// GET `url` with optional headers; blocking (the client tools are blocking too).
pub fn http_get(url: &str, headers: &[(&str, &str)]) -> HttpResp {
    http_request("GET", url, headers, Vec::new())
}

/// One HTTP request without following redirects, fully read.
pub fn http_request(method: &str, url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> HttpResp {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .expect("reqwest client");
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("HTTP method");
        let mut req = client.request(method.clone(), url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.body(body).send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.expect("response body").to_vec();
        HttpResp { status, headers, body }
    })
}

/// Starts a blob upload in `repo` and sends one chunk, leaving it unfinished, as an interrupted
/// client would. Returns the upload's location (absolute).
pub fn start_pending_upload(base_url: &str, repo: &str, chunk: &[u8]) -> String {
    let absolute = |loc: &str| {
        if loc.starts_with('/') {
            format!("{base_url}{loc}")
        } else {
            loc.to_string()
        }
    };
    let r = http_request("POST", &format!("{base_url}/v2/{repo}/blobs/uploads/"), &[], Vec::new());
    assert_eq!(r.status, 202, "start upload in {repo}: {}", String::from_utf8_lossy(&r.body));
    let location = absolute(r.header("Location").expect("upload Location"));
    let r = http_request("PATCH", &location, &[("Content-Type", "application/octet-stream")], chunk.to_vec());
    assert_eq!(r.status, 202, "upload chunk to {repo}: {}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("Range"), Some(format!("0-{}", chunk.len() - 1).as_str()));
    absolute(r.header("Location").expect("upload Location"))
}

/// The tags `GET /v2/<repo>/tags/list` returns, sorted.
pub fn registry_tags(base_url: &str, repo: &str) -> Vec<String> {
    let r = http_get(&format!("{base_url}/v2/{repo}/tags/list"), &[]);
    assert_eq!(r.status, 200, "tags/list of {repo}: {}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["name"], repo, "tags/list names the repository");
    let mut tags: Vec<String> = v["tags"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t.as_str().map(String::from)).collect())
        .unwrap_or_default();
    tags.sort();
    tags
}

/// The repositories `GET /v2/_catalog` returns (first page of up to 1000).
pub fn registry_catalog(base_url: &str) -> Vec<String> {
    let r = http_get(&format!("{base_url}/v2/_catalog?n=1000"), &[]);
    assert_eq!(r.status, 200, "catalog: {}", String::from_utf8_lossy(&r.body));
    r.json()["repositories"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// Fetches a manifest and checks the digest headers against its bytes.
pub fn registry_manifest(base_url: &str, repo: &str, reference: &str) -> HttpResp {
    let r = http_get(
        &format!("{base_url}/v2/{repo}/manifests/{reference}"),
        &[("Accept", ACCEPT_ALL_MANIFESTS)],
    );
    assert_eq!(r.status, 200, "manifest {repo}:{reference}: {}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.header("Docker-Content-Digest"),
        Some(sha256_digest(&r.body).as_str()),
        "Docker-Content-Digest of {repo}:{reference} must be the digest of the bytes served"
    );
    r
}

/// Fetches a blob and checks its bytes hash to the digest asked for.
pub fn registry_blob(base_url: &str, repo: &str, digest: &str) -> Vec<u8> {
    let r = http_get(&format!("{base_url}/v2/{repo}/blobs/{digest}"), &[]);
    assert_eq!(r.status, 200, "blob {repo}@{digest}: {}", String::from_utf8_lossy(&r.body));
    assert_eq!(sha256_digest(&r.body), digest, "blob {digest} served with other content");
    r.body
}
