//! `builder run -it` in a real terminal: `script` (util-linux) gives builder a pty
//! as its stdin and stdout, the test types into it. The process gets a pty of the
//! sandbox's own devpts: `tty` names it, the shell is interactive, the exit code
//! comes back.

use crate::util::env;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What `tty; echo hi; exit 3` typed into `builder run -it IMAGE sh` must give.
pub(crate) const TYPED: &str = "tty; echo h''i; exit 3\n";

/// Why `script` cannot be used here, if it cannot.
pub(crate) fn skip_reason() -> Option<String> {
    let found = Command::new("sh").args(["-c", "command -v script"]).stdout(Stdio::null()).status();
    (!found.is_ok_and(|s| s.success())).then(|| "script (util-linux) is not installed".to_string())
}

/// Runs `command_line` under `script` (configured by the caller: user, environment),
/// types `input`, and returns its exit code and everything the terminal showed.
pub(crate) fn typed_into_pty(mut script: Command, command_line: &str, input: &str) -> (Option<i32>, String) {
    let mut child = script
        .args(["-qec", command_line, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kept open until the end: an end of input would reach the shell as ^D.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(stdin);
    let out = String::from_utf8_lossy(&reader.join().unwrap()).replace('\r', "");
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    assert!(status.is_some(), "timed out; the terminal showed:\n{out}\nstderr:\n{err}");
    (status.and_then(|s| s.code()), out)
}

/// The lines `tty` and `echo` printed, checked: a /dev/pts name, then `hi`.
pub(crate) fn check_terminal_output(out: &str) {
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    let tty = lines.iter().find(|l| l.starts_with("/dev/") || l.contains("not a tty"));
    let tty = tty.unwrap_or_else(|| panic!("no output of tty:\n{out}"));
    let n = tty.strip_prefix("/dev/pts/").unwrap_or_else(|| panic!("tty printed {tty:?}:\n{out}"));
    assert!(n.parse::<u32>().is_ok(), "tty printed {tty:?}");
    // The typed line is echoed with h''i; only the command prints hi alone.
    assert!(lines.contains(&"hi"), "no hi:\n{out}");
}

#[test]
fn run_it_gives_the_process_a_terminal_of_its_own() {
    let Some(env) = env("run_it_gives_the_process_a_terminal_of_its_own") else { return };
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED run_it_gives_the_process_a_terminal_of_its_own: {why}");
        return;
    }
    let env = env.with_busybox();
    let line =
        format!("{} --root {} run --rm -it busybox sh", env!("CARGO_BIN_EXE_builder"), env.root.path().display());
    let (code, out) = typed_into_pty(Command::new("script"), &line, TYPED);
    assert_eq!(code, Some(3), "{out}");
    check_terminal_output(&out);
}
