//! Image names → manifest digests, in `refs.json`, replaced atomically on each change
//! under `refs.lock` so that concurrent tags do not lose each other's updates.

use crate::error::{Error, Result, io_at};
use crate::lock::{LockMode, StoreLockKind};
use crate::{Durability, Store};
use image_spec::{Digest, Reference};
use std::collections::BTreeMap;

type Refs = BTreeMap<String, Digest>;

/// `app` → `docker.io/library/app:latest`.
pub fn normalize_name(name: &str) -> Result<String> {
    let reference = Reference::parse(name)?;
    Ok(reference.to_string())
}

impl Store {
    fn read_refs(&self) -> Result<Refs> {
        let path = self.root.join("refs.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| Error::Parse { what: path.display().to_string(), source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Refs::new()),
            Err(e) => Err(io_at("reading", &path)(e)),
        }
    }

    fn update_refs(&self, change: impl FnOnce(&mut Refs) -> Result<()>) -> Result<()> {
        let _lock = self.lock_kind(StoreLockKind::Refs, &self.root.join("refs.lock"), LockMode::Exclusive)?;
        let mut refs = self.read_refs()?;
        change(&mut refs)?;
        let mut bytes = serde_json::to_vec_pretty(&refs).expect("refs serialize");
        bytes.push(b'\n');
        self.write_file(&self.root.join("refs.json"), "refs", &bytes, Durability::Synced)
    }

    /// Points `name` (normalised, e.g. `docker.io/library/app:latest`) at a manifest.
    pub fn set_ref(&self, name: &str, manifest: &Digest) -> Result<()> {
        let name = normalize_name(name)?;
        self.update_refs(|refs| {
            refs.insert(name, manifest.clone());
            Ok(())
        })
    }

    /// Removes a name; an error if it does not exist.
    pub fn remove_ref(&self, name: &str) -> Result<()> {
        let name = normalize_name(name)?;
        self.update_refs(|refs| match refs.remove(&name) {
            Some(_) => Ok(()),
            None => Err(Error::NoSuchImage { name, source: None }),
        })
    }

    /// The manifest a name points at, if any.
    pub fn get_ref(&self, name: &str) -> Result<Option<Digest>> {
        let name = normalize_name(name)?;
        Ok(self.read_refs()?.remove(&name))
    }

    /// All refs, sorted by name.
    pub fn refs(&self) -> Result<Vec<(String, Digest)>> {
        Ok(self.read_refs()?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test_store;

    #[test]
    fn refs_are_normalised_and_persisted() {
        let (_d, store) = test_store();
        let d = Digest::of(b"m");
        store.set_ref("app", &d).unwrap();
        store.set_ref("localhost:5000/x/y:1", &d).unwrap();
        assert_eq!(store.get_ref("docker.io/library/app:latest").unwrap(), Some(d.clone()));
        let reopened = Store::open(store.root()).unwrap();
        let names: Vec<String> = reopened.refs().unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["docker.io/library/app:latest", "localhost:5000/x/y:1"]);
        reopened.remove_ref("app:latest").unwrap();
        assert!(reopened.remove_ref("app").is_err());
        assert_eq!(reopened.refs().unwrap().len(), 1);
        assert!(store.set_ref("Bad Name", &d).is_err());
    }
}
