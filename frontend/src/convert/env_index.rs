//! A Docker env list (`KEY=VALUE` entries) with the position of each key beside it,
//! so that `ENV`/`ARG` set and words look up a variable without scanning the list:
//! a Dockerfile of 40,000 `ENV` lines converts in linear time, not quadratic.

use crate::shell::Env;
use std::collections::HashMap;

/// Where each key of an env list is. It indexes the list it was last given; every
/// answer is checked against the list, so a list changed behind its back costs a
/// rebuild, never a wrong value.
#[derive(Debug, Default, Clone)]
pub(super) struct EnvIndex {
    /// The first entry of each key (the one `set` replaces, as `set_env` does).
    first: HashMap<String, usize>,
    /// The last entry of each key (the one a lookup sees, as `ScopeEnv` does).
    last: HashMap<String, usize>,
    /// How many entries of the list are indexed.
    indexed: usize,
}

fn key_of(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

impl EnvIndex {
    /// The index of `env` as it is.
    pub fn of(env: &[String]) -> Self {
        let mut index = EnvIndex::default();
        index.sync(env);
        index
    }

    /// Indexes entries added since the last call (all of them after a shrink).
    fn sync(&mut self, env: &[String]) {
        if self.indexed > env.len() {
            *self = EnvIndex::default();
        }
        for (i, entry) in env.iter().enumerate().skip(self.indexed) {
            let key = key_of(entry);
            self.first.entry(key.to_string()).or_insert(i);
            self.last.insert(key.to_string(), i);
        }
        self.indexed = env.len();
    }

    fn valid(env: &[String], key: &str, at: Option<usize>) -> bool {
        at.is_none_or(|i| env.get(i).is_some_and(|e| key_of(e) == key))
    }

    /// Sets `key=value`, replacing the key's first entry in place or appending one.
    pub fn set(&mut self, env: &mut Vec<String>, key: &str, value: &str) {
        self.sync(env);
        if !Self::valid(env, key, self.first.get(key).copied()) {
            *self = EnvIndex::default();
            self.sync(env);
        }
        let entry = format!("{key}={value}");
        match self.first.get(key) {
            Some(&i) => env[i] = entry,
            None => {
                self.first.insert(key.to_string(), env.len());
                self.last.insert(key.to_string(), env.len());
                env.push(entry);
                self.indexed = env.len();
            }
        }
    }

    /// The value of `key`'s last `KEY=VALUE` entry.
    pub fn get<'e>(&self, env: &'e [String], key: &str) -> Option<&'e str> {
        if self.indexed != env.len() || !Self::valid(env, key, self.last.get(key).copied()) {
            let prefix = format!("{key}=");
            return env.iter().rev().find_map(|e| e.strip_prefix(&prefix));
        }
        let entry = &env[*self.last.get(key)?];
        match entry.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')) {
            Some(value) => Some(value),
            // A bare `KEY` entry has no value: an earlier `KEY=` may.
            None => env.iter().rev().find_map(|e| e.strip_prefix(key)?.strip_prefix('=')),
        }
    }
}

/// A stage's env as words see it, looked up through its index.
pub(super) struct IndexedEnv<'a> {
    pub env: &'a [String],
    pub index: &'a EnvIndex,
}

impl Env for IndexedEnv<'_> {
    fn get(&self, name: &str) -> Option<String> {
        self.index.get(self.env, name).map(String::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn set_replaces_the_first_entry_and_get_reads_the_last() {
        let mut env = v(&["A=1", "B=2", "A=dup", "BARE"]);
        let mut index = EnvIndex::default();
        index.set(&mut env, "A", "3");
        assert_eq!(env, v(&["A=3", "B=2", "A=dup", "BARE"]));
        assert_eq!(index.get(&env, "A"), Some("dup"));
        index.set(&mut env, "BARE", "x");
        index.set(&mut env, "C", "4");
        assert_eq!(env, v(&["A=3", "B=2", "A=dup", "BARE=x", "C=4"]));
        assert_eq!((index.get(&env, "C"), index.get(&env, "BARE"), index.get(&env, "Z")), (Some("4"), Some("x"), None));
    }

    #[test]
    fn a_list_changed_behind_its_back_is_reindexed() {
        let mut env = v(&["A=1", "B=2"]);
        let mut index = EnvIndex::default();
        index.set(&mut env, "B", "3");
        env = v(&["B=9", "A=8"]);
        assert_eq!(index.get(&env, "A"), Some("8"));
        index.set(&mut env, "A", "7");
        assert_eq!(env, v(&["B=9", "A=7"]));
        env.clear();
        index.set(&mut env, "A", "1");
        assert_eq!(env, v(&["A=1"]));
    }
}
