//! Docker Registry v2 token authentication with Docker's own client: wharf as its own token
//! server (`auth.token.htpasswd`), on loopback where Docker speaks plain HTTP. `docker login`
//! follows the Bearer challenge to wharf's token endpoint; a user with every right pushes and
//! pulls; a user the access policy allows only to pull is refused on push but can pull; a wrong
//! password and an anonymous push are refused.

mod common;

use common::dockerd::Dockerd;
use common::images::{docker_context, http_get, run, run_unchecked};
use common::Wharf;
use std::io::Write;
use std::process::{Command, Output, Stdio};

const ACCESS: &str = "access:
  rules:
    - {repositories: ['**'], users: [alice], allow: [pull, push, delete]}
    - {repositories: ['**'], users: [reader], allow: [pull]}
";

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn login(d: &Dockerd, registry: &str, user: &str, password: &str) -> Output {
    let mut cmd = d.cmd();
    cmd.args(["login", registry, "-u", user, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn docker login");
    child.stdin.take().unwrap().write_all(password.as_bytes()).unwrap();
    let out = child.wait_with_output().expect("docker login");
    eprintln!("docker login {registry} -u {user} -> {}", out.status);
    out
}

fn pushed_digest(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.split("digest: ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest in docker push output:\n{text}"))
        .to_string()
}

#[test]
fn docker_logs_in_through_wharfs_token_server_and_the_policy_decides_push_and_pull() {
    if !common::require_tool("curl") {
        return;
    }
    let Some(d) = Dockerd::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let users: String = [("alice", "alice-pw"), ("reader", "reader-pw")]
        .iter()
        .map(|(u, p)| format!("{u}:{}\n", bcrypt::hash(p, 4).unwrap()))
        .collect();
    std::fs::write(&htpasswd, users).unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nauth:\n  token:\n    htpasswd: {}\n    service: wharf-e2e\n    issuer: wharf-e2e-issuer\n{ACCESS}",
            htpasswd.display()
        ),
    )
    .unwrap();
    let w = Wharf::start_with(&[config.to_str().unwrap()], &[]);
    let registry = w.addr.clone();

    // What Docker sees first: a Bearer challenge pointing at wharf's own token endpoint.
    let challenge = http_get(&format!("{}/v2/", w.url), &[]);
    assert_eq!(challenge.status, 401);
    let header = challenge.header("WWW-Authenticate").unwrap_or_default().to_string();
    assert!(header.starts_with("Bearer realm=\"http://"), "{header}");
    assert!(header.contains("service=\"wharf-e2e\""), "{header}");

    let image = format!("{registry}/team/app:v1");
    let ctx = tempfile::tempdir().unwrap();
    docker_context(ctx.path(), 2);
    d.docker(&["build", "-q", "-t", &image, &ctx.path().to_string_lossy()]);
    let image_id = d.inspect(&image, "{{.Id}}");

    // Anonymous: the token server grants nothing, the push is refused.
    let anonymous = d.docker_unchecked(&["push", &image]);
    assert!(!anonymous.status.success(), "anonymous push must fail:\n{}", text(&anonymous));
    let refused = text(&anonymous).to_lowercase();
    assert!(refused.contains("denied") || refused.contains("unauthorized"), "{refused}");

    // A wrong password: the token endpoint refuses it, so does docker login.
    let wrong = login(&d, &registry, "alice", "not-alices-password");
    assert!(!wrong.status.success(), "a wrong password must be refused:\n{}", text(&wrong));
    assert!(text(&wrong).to_lowercase().contains("unauthorized"), "{}", text(&wrong));

    // alice may do everything: login, push, rmi, pull.
    let ok = login(&d, &registry, "alice", "alice-pw");
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("Login Succeeded"), "{}", text(&ok));
    let digest = pushed_digest(&d.docker(&["push", &image]));
    d.docker(&["rmi", &image]);
    assert!(!d.has_image(&image_id));
    let pull = d.docker(&["pull", &image]);
    assert!(String::from_utf8_lossy(&pull.stdout).contains(&format!("Digest: {digest}")));
    assert_eq!(d.inspect(&image, "{{.Id}}"), image_id);

    // reader may only pull: a push to a new tag or a new repository is refused, the pull works.
    let ok = login(&d, &registry, "reader", "reader-pw");
    assert!(ok.status.success(), "{}", text(&ok));
    for target in [format!("{registry}/team/app:v2"), format!("{registry}/reader/own:v1")] {
        d.docker(&["tag", &image, &target]);
        let push = d.docker_unchecked(&["push", &target]);
        assert!(
            !push.status.success(),
            "reader's push to {target} must be refused:\n{}",
            text(&push)
        );
        let out = text(&push).to_lowercase();
        assert!(out.contains("denied") || out.contains("unauthorized"), "{out}");
    }
    d.docker(&["rmi", &image]);
    let pull = d.docker(&["pull", &image]);
    assert!(String::from_utf8_lossy(&pull.stdout).contains(&format!("Digest: {digest}")));
    assert_eq!(d.inspect(&image, "{{.Id}}"), image_id);

    // Nothing reader tried to push landed; what alice pushed is all there is.
    let token = run(Command::new("curl").args(["-sS", "-u", "alice:alice-pw"]).arg(format!(
        "{}/auth/token?service=wharf-e2e&scope=repository:team/app:pull&scope=registry:catalog:*",
        w.url
    )));
    let body: serde_json::Value = serde_json::from_slice(&token.stdout).expect("token response is JSON");
    let bearer = format!("Bearer {}", body["token"].as_str().expect("a token"));
    let tags = http_get(&format!("{}/v2/team/app/tags/list", w.url), &[("Authorization", &bearer)]);
    assert_eq!(tags.status, 200, "{}", String::from_utf8_lossy(&tags.body));
    assert_eq!(tags.json()["tags"], serde_json::json!(["v1"]));
    let catalog = http_get(&format!("{}/v2/_catalog", w.url), &[("Authorization", &bearer)]);
    assert_eq!(catalog.status, 200, "{}", String::from_utf8_lossy(&catalog.body));
    assert_eq!(catalog.json()["repositories"], serde_json::json!(["team/app"]));
    let _ = run_unchecked(d.cmd().args(["logout", &registry]));
}
