//! Image names → manifest digests, in `refs.json`, replaced atomically on each change
//! under `refs.lock` so that concurrent tags do not lose each other's updates.

use super::lock::{LockMode, lock_file};
use super::{Store, sync_dir, temp_prefix};
use anyhow::{Context as _, Result, anyhow, bail};
use image_spec::{Digest, Reference};
use std::collections::BTreeMap;
use std::io::Write;

type Refs = BTreeMap<String, Digest>;

/// `app` → `docker.io/library/app:latest`.
pub fn normalize_name(name: &str) -> Result<String> {
    let reference = Reference::parse(name).map_err(|e| anyhow!(e))?;
    Ok(reference.to_string())
}

impl Store {
    fn read_refs(&self) -> Result<Refs> {
        let path = self.root.join("refs.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Refs::new()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    fn update_refs(&self, change: impl FnOnce(&mut Refs) -> Result<()>) -> Result<()> {
        let _lock = lock_file(&self.root.join("refs.lock"), LockMode::Exclusive)?;
        let mut refs = self.read_refs()?;
        change(&mut refs)?;
        let mut temp = tempfile::Builder::new()
            .prefix(&temp_prefix("refs"))
            .tempfile_in(self.tmp())
            .context("creating a temp file for refs")?;
        serde_json::to_writer_pretty(&mut temp, &refs)?;
        temp.write_all(b"\n")?;
        temp.as_file().sync_all()?;
        temp.persist(self.root.join("refs.json")).context("replacing refs.json")?;
        sync_dir(&self.root);
        Ok(())
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
            None => bail!("no such image: {name}"),
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
    use super::super::tests::test_store;
    use super::*;

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
