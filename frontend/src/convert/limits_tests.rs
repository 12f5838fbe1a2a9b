//! Hostile Dockerfiles: chains of stages too deep to convert recursively get an
//! error at a line, never a stack overflow.

use super::MAX_STAGE_DEPTH;
use crate::{BaseImage, BuildOptions, ImageResolver, ResolveError, compile};
use image_spec::Platform;

struct NoImages;

impl ImageResolver for NoImages {
    fn resolve(&self, _: &str, _: &Platform) -> Result<Option<BaseImage>, ResolveError> {
        Ok(None)
    }
}

fn options() -> BuildOptions {
    BuildOptions::new(Platform::new("linux", "amd64"), Platform::new("linux", "amd64"))
}

/// Compiles on a thread with the stack a program's main thread has (8 MiB).
fn compile_on_a_stack(text: String) -> Result<(), String> {
    std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(move || compile(&text, &options(), &NoImages).map(|_| ()).map_err(|e| e.to_string()))
        .unwrap()
        .join()
        .unwrap()
}

fn from_chain(stages: usize) -> String {
    let mut text = String::from("FROM scratch AS s0\n");
    for i in 1..stages {
        text.push_str(&format!("FROM s{} AS s{i}\n", i - 1));
    }
    text
}

fn copy_chain(stages: usize) -> String {
    let mut text = String::from("FROM scratch AS s0\nCOPY a /a\n");
    for i in 1..stages {
        text.push_str(&format!("FROM scratch AS s{i}\nCOPY --from=s{} /a /a\n", i - 1));
    }
    text
}

#[test]
fn a_chain_of_3000_stages_is_an_error_at_a_line() {
    let error = compile_on_a_stack(from_chain(3000)).unwrap_err();
    assert!(error.starts_with("Dockerfile:") && error.contains("more than"), "{error}");
    compile_on_a_stack(from_chain(MAX_STAGE_DEPTH - 10)).unwrap();
}

#[test]
fn a_chain_of_5000_copy_from_stages_is_an_error_at_a_line() {
    let error = compile_on_a_stack(copy_chain(5000)).unwrap_err();
    assert!(error.starts_with("Dockerfile:") && error.contains("more than"), "{error}");
    compile_on_a_stack(copy_chain(MAX_STAGE_DEPTH - 10)).unwrap();
}

#[test]
fn nested_substitutions_and_doubling_env_are_errors_at_a_line() {
    let depth = 20_000;
    let nested = format!("FROM scratch\nENV a={}x{}\n", "${a:-".repeat(depth), "}".repeat(depth));
    let error = compile_on_a_stack(nested).unwrap_err();
    assert!(error.starts_with("Dockerfile:2") && error.contains("nested more than"), "{error}");
    assert!(error.len() < 1000, "the error echoes {} bytes", error.len());
    let doubling = format!("FROM scratch\nENV A=0123456789\n{}", "ENV A=${A}${A}\n".repeat(40));
    let error = compile_on_a_stack(doubling).unwrap_err();
    assert!(error.starts_with("Dockerfile:") && error.contains("larger than"), "{error}");
}

#[test]
fn forty_thousand_env_lines_convert_in_linear_time() {
    let mut text = String::from("FROM scratch\n");
    for i in 0..20_000 {
        text.push_str(&format!("ENV K{i}=v{i}\nENV R{}=$K{i}\n", i % 100));
    }
    let started = std::time::Instant::now();
    let definition = compile(&text, &options(), &NoImages).unwrap();
    let env = definition.image.config.env.unwrap();
    assert_eq!(env.len(), 1 + 20_000 + 100);
    assert!(env.contains(&"R99=v19999".to_string()), "{:?}", &env[env.len() - 3..]);
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
}

#[test]
fn a_stage_built_on_a_large_env_looks_it_up_in_linear_time() {
    let mut text = String::from("FROM scratch AS base\n");
    for i in 0..20_000 {
        text.push_str(&format!("ENV K{i}=v{i}\n"));
    }
    text.push_str("FROM base\n");
    for i in 0..20_000 {
        text.push_str(&format!("LABEL l{}=$K{i}\n", i % 10));
    }
    let started = std::time::Instant::now();
    let definition = compile(&text, &options(), &NoImages).unwrap();
    assert_eq!(definition.image.config.labels.unwrap()["l9"], "v19999");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
}
