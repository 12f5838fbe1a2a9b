//! Hostile input through the real binary: bad names refused before any work, with
//! Docker's words and without echoing a megabyte.

use crate::util::env;

#[test]
fn an_invalid_tag_is_refused_before_the_build_runs() {
    let Some(env) = env("invalid_tag") else { return };
    // A build that would fail on its own: the tag must be refused first.
    let ctx = env.context("bad_tag", &[("Dockerfile", "FROM scratch\nCOPY missing-file /\n")]);
    let ctx_arg = ctx.to_str().unwrap();
    let out = env.run(&["build", "--progress=plain", "-t", "Bad:1", ctx_arg]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            r#"invalid tag "Bad:1": invalid reference format: repository name (library/Bad) must be lowercase"#
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("missing-file"), "the build ran: {stderr}");

    let out = env.run(&["build", "--progress=plain", "-t", "bad::1", ctx_arg]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(r#"invalid tag "bad::1": invalid reference format: "bad::1""#), "{stderr}");

    // 5000 characters: over Docker's 255, and the message does not echo them all.
    let long = "a".repeat(5000);
    let out = env.run(&["build", "--progress=plain", "-t", &long, ctx_arg]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("must not be more than 255 characters"), "{stderr}");
    assert!(stderr.len() < 2000, "{} bytes of error", stderr.len());
}
