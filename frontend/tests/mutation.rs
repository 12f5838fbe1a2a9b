//! Mutation tests of the frontend: every golden Dockerfile, mutated thousands of
//! ways (cut, duplicated, swapped lines; hostile tokens such as `${`, heredoc markers,
//! escapes and deep stage references inserted), must compile or fail with an error at
//! `Dockerfile:LINE` — never panic, overflow the stack or hang.

use frontend::{BaseImage, BuildOptions, ImageResolver, ResolveError, compile};
use image_spec::Platform;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

struct NoImages;

impl ImageResolver for NoImages {
    fn resolve(&self, _: &str, _: &Platform) -> Result<Option<BaseImage>, ResolveError> {
        Ok(None)
    }
}

fn options() -> BuildOptions {
    BuildOptions::new(Platform::new("linux", "amd64"), Platform::new("linux", "amd64"))
}

/// What a mutation may insert: the pieces hostile Dockerfiles are made of.
const TOKENS: &[&str] = &[
    "${",
    "}",
    "${A:-${B:+${C#*}}}",
    "${X/**/y}",
    "$",
    "\\\n",
    "\"",
    "'",
    "<<EOF\n",
    "EOF\n",
    "<<-'E'\n",
    "\nFROM scratch AS s\n",
    "--from=s ",
    "--from=0 ",
    "COPY --from=9999 / /\n",
    "RUN --mount=type=cache,target=/c ",
    "\n",
    "\t",
    "# escape=`\n",
    "# syntax=x\n",
    "ONBUILD ",
    "ARG A=${A}${A}\n",
    "ENV A=${A}${A}\n",
    "\u{0}",
    "é",
    "[\"a\", ",
    "]",
    "**",
    "HEALTHCHECK --interval=0s CMD ",
    "EXPOSE 1-99999\n",
];

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

fn mutate(text: &str, rng: &mut Rng) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(chars.len() + 1);
        match rng.below(5) {
            0 => {
                let end = (at + rng.below(20)).min(chars.len());
                chars.drain(at..end);
            }
            1 | 2 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                chars.splice(at..at, token.chars());
            }
            _ => {
                let lines: Vec<String> = chars.iter().collect::<String>().lines().map(String::from).collect();
                if lines.is_empty() {
                    continue;
                }
                let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
                let mut lines = lines;
                if rng.below(2) == 0 {
                    lines.swap(a, b);
                } else {
                    let copy = lines[a].clone();
                    lines.insert(b, copy);
                }
                chars = (lines.join("\n") + "\n").chars().collect();
            }
        }
    }
    chars.into_iter().collect()
}

#[test]
fn mutated_dockerfiles_compile_or_fail_at_a_line() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/dockerfiles");
    let mut seeds: Vec<String> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path().join("Dockerfile"))
        .filter(|p| p.is_file())
        .map(|p| fs::read_to_string(p).unwrap())
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 10, "{} seed Dockerfiles", seeds.len());
    let mutants_per_seed = std::env::var("BUILDER_MUTANTS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let mut rng = Rng(0x853c_49e6_748f_ea9b);
    let (mut compiled, mut failed) = (0, 0);
    for seed in &seeds {
        for _ in 0..mutants_per_seed {
            let text = mutate(seed, &mut rng);
            let started = Instant::now();
            let shown = text.clone();
            let result = std::thread::Builder::new()
                .stack_size(8 << 20)
                .spawn(move || {
                    std::panic::catch_unwind(|| {
                        compile(&text, &options(), &NoImages).map(|_| ()).map_err(|e| e.to_string())
                    })
                })
                .unwrap()
                .join()
                .unwrap();
            match result {
                Ok(Ok(())) => compiled += 1,
                Ok(Err(message)) => {
                    assert!(message.starts_with("Dockerfile:"), "error without a line: {message}\n---\n{shown}");
                    failed += 1;
                }
                Err(_) => panic!("the frontend panicked on:\n{shown}"),
            }
            assert!(started.elapsed() < Duration::from_secs(5), "took {:?} on:\n{shown}", started.elapsed());
        }
    }
    println!("mutated Dockerfiles: {compiled} compiled, {failed} failed at a line");
    assert!(compiled > 0 && failed > 0);
}
