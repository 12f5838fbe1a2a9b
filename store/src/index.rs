//! Image indexes in the store: a multi-platform build names one index whose entries
//! are the images of its platforms (OCI image index, or a Docker manifest list).
//! Whatever reads an image by name gets the entry for the platform it asks for, or
//! the machine's own ([`Store::image_from_manifest`]).

use crate::Store;
use crate::error::{Error, Result};
use image_spec::{Descriptor, Digest, Image, Index, MediaTypeFamily, Platform, Reference, platform_matches};
use std::collections::BTreeMap;

/// The index in `bytes`, if they are one (a JSON object with `manifests`).
pub(crate) fn parse_index(bytes: &[u8]) -> Option<Index> {
    let index: Index = serde_json::from_slice(bytes).ok()?;
    Some(index)
}

/// The platform an image config says it is for.
pub fn config_platform(image: &Image) -> Platform {
    Platform {
        architecture: image.config.architecture.clone(),
        os: image.config.os.clone(),
        variant: image.config.variant.clone().filter(|v| !v.is_empty()),
    }
}

/// Annotations of an index (`--annotation index:`) and of each of its entries
/// (`manifest-descriptor:`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexAnnotations {
    pub index: BTreeMap<String, String>,
    pub descriptors: BTreeMap<String, String>,
}

impl Store {
    /// Writes an index of `images` (each with its platform, in that order) in the
    /// media types of `family` and returns its digest.
    pub fn write_index(
        &self,
        images: &[(Platform, Image)],
        family: MediaTypeFamily,
        annotations: &IndexAnnotations,
    ) -> Result<Digest> {
        let some = |a: &BTreeMap<String, String>| (!a.is_empty()).then(|| a.clone());
        let mut manifests = Vec::with_capacity(images.len());
        for (platform, image) in images {
            manifests.push(Descriptor {
                media_type: family.manifest_type().into(),
                digest: image.manifest_digest.clone(),
                size: self.blob_size(&image.manifest_digest)?,
                annotations: some(&annotations.descriptors),
                platform: Some(platform.clone()),
            });
        }
        let media_type = Some(family.index_type().into());
        let index = Index { schema_version: 2, media_type, manifests, annotations: some(&annotations.index) };
        let bytes = serde_json::to_vec(&index).expect("indexes serialize");
        self.write_blob_bytes(&bytes)
    }

    /// The index `digest` is, or `None` when it is an image manifest (or anything else).
    pub fn read_index(&self, digest: &Digest) -> Result<Option<Index>> {
        Ok(parse_index(&self.read_blob(digest)?))
    }

    /// The image of `digest` for `want`: the best entry of an index the store holds
    /// (see [`image_spec::select_manifest`]), or a manifest whose config is for a
    /// matching platform.
    pub fn image_for_platform(&self, digest: &Digest, want: &Platform) -> Result<Image> {
        let missing = |available: Vec<String>| Error::NoPlatform {
            image: digest.to_string(),
            wanted: want.to_string(),
            available,
        };
        match self.read_index(digest)? {
            Some(index) => {
                let held: Vec<Descriptor> =
                    index.manifests.iter().filter(|d| self.has_blob(&d.digest)).cloned().collect();
                match image_spec::select_manifest(&held, want) {
                    Some(entry) => self.image_from_manifest(&entry.digest),
                    None => {
                        Err(missing(held.iter().filter_map(|d| d.platform.as_ref()).map(|p| p.to_string()).collect()))
                    }
                }
            }
            None => {
                let image = self.image_from_manifest(digest)?;
                let have = config_platform(&image);
                // A config that names no architecture says nothing to check.
                if have.architecture.is_empty() || platform_matches(want, &have) {
                    Ok(image)
                } else {
                    Err(missing(vec![have.to_string()]))
                }
            }
        }
    }

    /// The platforms a name or digest has images for: an index's entries the store
    /// holds, or the one platform of an image.
    pub fn platforms_of(&self, digest: &Digest) -> Result<Vec<(Platform, Digest)>> {
        match self.read_index(digest)? {
            Some(index) => Ok(index
                .manifests
                .iter()
                .filter(|d| self.has_blob(&d.digest))
                .filter_map(|d| Some((d.platform.clone()?, d.digest.clone())))
                .collect()),
            None => Ok(vec![(config_platform(&self.image_from_manifest(digest)?), digest.clone())]),
        }
    }

    /// The image `name` (a reference the store has a ref for, or a digest) has for
    /// `want`: `None` when the store has nothing by that name, an error naming the
    /// image, the platform and the ones it has when it has others only.
    pub fn find_image_for(&self, name: &str, want: &Platform) -> Result<Option<Image>> {
        let digest = match Digest::parse(name) {
            Ok(digest) if self.has_blob(&digest) => digest,
            _ => {
                let reference = Reference::parse(name)?;
                match (&reference.digest, self.get_ref(&reference.to_string())?) {
                    (Some(digest), _) if self.has_blob(digest) => digest.clone(),
                    (_, Some(digest)) => digest,
                    _ => return Ok(None),
                }
            }
        };
        // Held by this process's lease (if it took one), as `load_image` holds its image.
        self.lease_image(&digest)?;
        match self.image_for_platform(&digest, want) {
            Err(Error::NoPlatform { wanted, available, .. }) => {
                Err(Error::NoPlatform { image: name.to_string(), wanted, available })
            }
            other => other.map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image_spec::{ImageConfig, LayerInfo};

    fn image(store: &Store, platform: &Platform) -> Image {
        let config = ImageConfig {
            architecture: platform.architecture.clone(),
            os: platform.os.clone(),
            variant: platform.variant.clone(),
            ..Default::default()
        };
        store.write_image(&config, &[] as &[LayerInfo]).unwrap()
    }

    #[test]
    fn an_index_serves_each_platform_and_names_the_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (amd, arm) = (Platform::new("linux", "amd64"), Platform::parse("linux/arm/v6").unwrap());
        let images = [(amd.clone(), image(&store, &amd)), (arm.clone(), image(&store, &arm))];
        let index = store.write_index(&images, MediaTypeFamily::Oci, &Default::default()).unwrap();
        store.set_ref("localhost/app:1", &index).unwrap();

        let for_arm = store.find_image_for("localhost/app:1", &Platform::parse("linux/arm/v7").unwrap()).unwrap();
        assert_eq!(for_arm.unwrap().manifest_digest, images[1].1.manifest_digest);
        let platforms: Vec<String> = store.platforms_of(&index).unwrap().iter().map(|(p, _)| p.to_string()).collect();
        assert_eq!(platforms, ["linux/amd64", "linux/arm/v6"]);
        let err = store.find_image_for("localhost/app:1", &Platform::new("linux", "arm64")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "image localhost/app:1 has no image for platform linux/arm64 (it has: linux/amd64, linux/arm/v6)"
        );
        assert_eq!(store.find_image_for("localhost/other:1", &amd).unwrap().map(|i| i.manifest_digest), None);
        // A lone manifest is checked against its config's platform.
        let single = images[0].1.manifest_digest.to_string();
        assert!(store.find_image_for(&single, &arm).is_err());
        assert!(store.find_image_for(&single, &amd).unwrap().is_some());
    }

    #[test]
    fn an_index_holding_another_platform_only_is_found_by_id_and_named_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let host = image_spec::host_platform();
        let other = if host.architecture == "s390x" {
            Platform::new("linux", "riscv64")
        } else {
            Platform::new("linux", "s390x")
        };
        let (mine, theirs) = (image(&store, &host), image(&store, &other));
        let images = [(host.clone(), mine.clone()), (other.clone(), theirs.clone())];
        let index = store.write_index(&images, MediaTypeFamily::Oci, &Default::default()).unwrap();
        // As a pull for the other platform leaves it: the host's entry is not held.
        std::fs::remove_file(store.blob_path(&mine.manifest_digest)).unwrap();
        store.set_ref("localhost/pulled:1", &index).unwrap();

        let err = store.load_image("localhost/pulled:1").unwrap_err().to_string();
        assert_eq!(err, format!("image localhost/pulled:1 has no image for platform {host} (it has: {other})"));
        let by_id = store.load_image(&theirs.config_digest.hex()[..12]).unwrap();
        assert_eq!(by_id.manifest_digest, theirs.manifest_digest);
    }
}
