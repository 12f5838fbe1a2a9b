//! BuildKit's parser and word-expansion vectors, read in place from
//! `testdata/conformance/dockerfile/` (vendored from BuildKit; see its README for the formats).

use frontend::parser;
use frontend::shell::Lex;
use std::fs;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/conformance/dockerfile")
}

fn cases(dir: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(root().join(dir)).unwrap().map(|e| e.unwrap().path()).collect();
    out.sort();
    out
}

#[test]
fn parser_vectors() {
    let mut failures = Vec::new();
    let all = cases("parser/testfiles");
    for case in &all {
        let text = fs::read_to_string(case.join("Dockerfile")).unwrap();
        let expected = fs::read_to_string(case.join("result")).unwrap();
        match parser::parse(&text) {
            Ok(ast) if ast.dump() == expected => {}
            Ok(ast) => failures.push(format!("{}:\n--- want\n{expected}--- got\n{}", case.display(), ast.dump())),
            Err(e) => failures.push(format!("{}: {e:?}", case.display())),
        }
    }
    println!("parser vectors: {}/{}", all.len() - failures.len(), all.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn parser_negative_vectors() {
    let all = cases("parser/testfiles-negative");
    let accepted: Vec<_> = all
        .iter()
        .filter(|case| {
            let text = fs::read_to_string(case.join("Dockerfile")).unwrap();
            frontend::check(&text).is_ok()
        })
        .collect();
    println!("negative parser vectors: {}/{}", all.len() - accepted.len(), all.len());
    assert!(accepted.is_empty(), "accepted: {accepted:?}");
}

#[test]
fn parser_line_numbers() {
    let text = fs::read_to_string(root().join("parser/testfile-line/Dockerfile")).unwrap();
    let ast = parser::parse(&text).unwrap();
    let lines: Vec<(usize, usize)> = ast.children.iter().map(|c| (c.start_line, c.end_line)).collect();
    assert_eq!(lines, vec![(5, 5), (11, 12), (17, 31)]);
    println!("line vectors: 3/3");
}

struct Vars(Vec<(String, String)>);

impl frontend::shell::Env for Vars {
    fn get(&self, name: &str) -> Option<String> {
        self.0.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }
}

#[test]
fn shell_env_var_vectors() {
    let text = fs::read_to_string(root().join("shell/envVarTest")).unwrap();
    let env = Vars(
        [("PWD", "/home"), ("SHELL", "bash"), ("KOREAN", "한국어"), ("NULL", "")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    let lex = Lex::new('\\');
    let (mut total, mut failures) = (0, Vec::new());
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.splitn(3, '|').collect();
        let (platform, input, expected) = (fields[0].trim(), fields[1].trim(), fields[2].trim());
        if platform == "W" {
            continue;
        }
        total += 1;
        let got = lex.process_word(input, &env);
        let ok = match &got {
            Ok(v) => expected != "error" && v == expected,
            Err(_) => expected == "error",
        };
        if !ok {
            failures.push(format!("{input:?}: want {expected:?}, got {got:?}"));
        }
    }
    println!("envVarTest vectors: {}/{total}", total - failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn shell_words_vectors() {
    let text = fs::read_to_string(root().join("shell/wordsTest")).unwrap();
    let mut env = Vars(Vec::new());
    let lex = Lex::new('\\');
    let (mut total, mut failures) = (0, Vec::new());
    for line in text.lines() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(assign) = line.strip_prefix("ENV ") {
            let (k, v) = assign.split_once('=').unwrap();
            env.0.push((k.to_string(), v.to_string()));
            continue;
        }
        let (input, expected) = line.split_once('|').unwrap();
        let (input, expected) = (input.trim(), expected.trim_start());
        total += 1;
        let got = lex.process_words(input, &env);
        let ok = match &got {
            Ok(words) => expected != "error" && words.join(",") == expected,
            Err(_) => expected == "error",
        };
        if !ok {
            failures.push(format!("{input:?}: want {expected:?}, got {got:?}"));
        }
    }
    println!("wordsTest vectors: {}/{total}", total - failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
