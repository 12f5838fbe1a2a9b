//! `builder save`: one tarball that `docker load` (via `manifest.json` and
//! `repositories`) and OCI tools (via `oci-layout` and `index.json`) both read. Every
//! file in it points into `blobs/sha256/`, as in Docker 25's `docker save`. With
//! [`ArchiveFormat::Oci`] only the OCI layout is written, as a tarball or a directory.

use crate::layer::{compress_layer, stored_compression};
use anyhow::{Context as _, Result, bail};
use image_spec::{Compression, Descriptor, Digest, Image, Index, LayerInfo, Platform, Reference};
use image_spec::{MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Read, Seek as _, Write};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use store::Store;
use tempfile::NamedTempFile;

/// What an archive holds besides the blobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArchiveFormat {
    /// `manifest.json` + `repositories` for `docker load`, and an OCI layout.
    #[default]
    Docker,
    /// An OCI image layout only (`oci-layout`, `index.json`, `blobs/`).
    Oci,
}

/// An image to archive and the names it goes under (none: listed without a name).
#[derive(Debug, Clone)]
pub struct ArchiveImage {
    pub image: Image,
    pub names: Vec<Reference>,
}

/// One entry of a docker-archive's `manifest.json`.
#[derive(Debug, Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerManifestEntry {
    pub config: String,
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    pub layers: Vec<String>,
}

fn blob_name(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// Writes `images` (with the names they were asked by) to one tarball, atomically: a
/// temp file beside `out` renamed into place when complete.
pub fn save(store: &Store, images: &[(String, Image)], out: &Path, format: ArchiveFormat) -> Result<()> {
    let mut entries = Vec::new();
    for (name, image) in images {
        let names = saved_name(store, name, image)?.into_iter().collect();
        entries.push(ArchiveImage { image: image.clone(), names });
    }
    write_file_atomically(store, out, |writer| write_archive(store, &entries, format, writer).map(|_| ()))
}

/// Creates `out` through a temp file beside it, renamed into place once `write` is
/// done, so a reader (or a builder killed meanwhile) never leaves a partial file under
/// the name. Like `docker save -o`, `tar` or `zstd -o`, the output is not fsynced:
/// durability against power loss is the store's concern (its blobs are synced), not
/// that of a file handed to the user, and syncing would write every byte to disk
/// while the caller waits.
pub fn write_file_atomically(
    store: &Store,
    out: &Path,
    write: impl FnOnce(&mut OutputFile) -> Result<()>,
) -> Result<()> {
    let (temp, _record) = output_temp(store, out, ".builder-save-")?;
    let file = temp.as_file().try_clone().context("opening the temp file")?;
    let mut output = OutputFile(BufWriter::with_capacity(1 << 20, file));
    write(&mut output)?;
    output.0.into_inner().map_err(|e| e.into_error())?;
    temp.persist(out).with_context(|| format!("renaming into {}", out.display()))?;
    Ok(())
}

/// A temp file beside `out` named `<prefix>XXXXXX`, locked while this process writes
/// it and recorded in the store, so that the next output to that directory, or any
/// command on the store, removes it if this process is killed. Stale temp files of
/// earlier writers beside `out` go first.
pub fn output_temp(store: &Store, out: &Path, prefix: &str) -> Result<(NamedTempFile, store::OutputRecord)> {
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    store::remove_stale_outputs(dir);
    let temp = store::create_locked_temp(dir, prefix, 0o666)
        .with_context(|| format!("creating a temp file in {}", dir.display()))?;
    let record = store.record_output_temp(temp.path())?;
    Ok((temp, record))
}

/// The mode of a file made for the user (an output, a save): 0666 less the umask, as
/// `docker save -o` or `tar -f` make it, not the 0600 of a temp file.
pub fn user_file_mode() -> std::fs::Permissions {
    std::os::unix::fs::PermissionsExt::from_mode(0o666)
}

/// Where an archive is written. Blobs are appended with [`ArchiveWrite::append_blob`],
/// which a file output does in the kernel.
pub trait ArchiveWrite: Write {
    /// Appends `len` bytes of `blob` from its current offset.
    fn append_blob(&mut self, blob: &mut File, len: u64) -> std::io::Result<()> {
        copy_exactly(blob, len, self)
    }

    /// The file under this output, flushed, for writing to directly (its offset is
    /// the output's); `None` when the output is not a file (a pipe, memory).
    fn direct(&mut self) -> std::io::Result<Option<File>> {
        Ok(None)
    }
}

impl<W: Write> ArchiveWrite for BufWriter<W> {}
impl<T: ArchiveWrite + ?Sized> ArchiveWrite for &mut T {
    fn append_blob(&mut self, blob: &mut File, len: u64) -> std::io::Result<()> {
        (**self).append_blob(blob, len)
    }

    fn direct(&mut self) -> std::io::Result<Option<File>> {
        (**self).direct()
    }
}
impl ArchiveWrite for Vec<u8> {}

/// Copies `len` bytes of `blob` from its offset to `out` (file to file: in the kernel).
fn copy_exactly(blob: &mut File, len: u64, out: &mut (impl Write + ?Sized)) -> std::io::Result<()> {
    let copied = std::io::copy(&mut Read::take(blob, len), out)?;
    if copied != len {
        let message = format!("copied {copied} of {len} bytes");
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, message));
    }
    Ok(())
}

/// Copies `len` bytes of a stream (a packed layer's tar) to `out`, and checks that it
/// ends there.
fn copy_exactly_from(blob: &mut dyn Read, len: u64, out: &mut (impl Write + ?Sized)) -> std::io::Result<()> {
    let copied = std::io::copy(&mut Read::take(&mut *blob, len), out)?;
    let mut more = [0u8; 1];
    if copied != len || blob.read(&mut more)? != 0 {
        let message = format!("the layer gave {copied} bytes or more where {len} were expected");
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, message));
    }
    Ok(())
}

/// A file being written by [`write_file_atomically`].
pub struct OutputFile(BufWriter<File>);

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl ArchiveWrite for OutputFile {
    /// In the kernel (`copy_file_range`): no copy through user space, and shared
    /// extents where the filesystem can.
    fn append_blob(&mut self, blob: &mut File, len: u64) -> std::io::Result<()> {
        self.0.flush()?;
        copy_exactly(blob, len, &mut self.0.get_ref())
    }

    fn direct(&mut self) -> std::io::Result<Option<File>> {
        self.0.flush()?;
        self.0.get_ref().try_clone().map(Some)
    }
}

/// Writes the archive as a tar to any writer (a file, stdout).
pub fn write_archive<W: ArchiveWrite>(
    store: &Store,
    images: &[ArchiveImage],
    format: ArchiveFormat,
    out: W,
) -> Result<W> {
    TarArchive::new(out)?.finish(store, images, format)
}

/// A tarball archive written while its image is being made: [`TarArchive::add_layer`]
/// takes each layer as the export has it ready (compressing it for this export
/// straight into the archive when it can), [`TarArchive::finish`] adds the rest.
///
/// Blobs go in image order (each image's layers, config, manifest), whatever the
/// store already held, so the same images give the same bytes.
pub struct TarArchive<W: ArchiveWrite> {
    sink: TarSink<W>,
}

impl<W: ArchiveWrite> TarArchive<W> {
    pub fn new(out: W) -> Result<Self> {
        let mut sink = TarSink { tar: tar::Builder::new(out), written: HashSet::new() };
        sink.dir("blobs/")?;
        sink.dir("blobs/sha256/")?;
        Ok(TarArchive { sink })
    }

    /// Adds `layer`, in `compression` at a level when given (`None`: as it is), and
    /// returns it as added. A layer the store does not have in that compression yet
    /// is compressed into a new store variant and, when the output is a file, into
    /// the archive at the same time, rather than copied into it after.
    pub fn add_layer(
        &mut self,
        store: &Store,
        layer: &LayerInfo,
        compression: Option<(Compression, Option<i32>)>,
    ) -> Result<LayerInfo> {
        let layer = match compression {
            None => layer.clone(),
            Some((compression, level)) => match stored_compression(store, layer, compression, level) {
                Some(stored) => stored,
                None => match self.sink.tar.get_mut().direct().context("writing the archive")? {
                    Some(file) => return self.sink.stream_layer(store, layer, compression, level, file),
                    None => compress_layer(store, layer, compression, level, None)?,
                },
            },
        };
        self.sink.blob(store, &layer.digest)?;
        Ok(layer)
    }

    /// Adds what `images` need that is not in yet, and the layout's files.
    pub fn finish(mut self, store: &Store, images: &[ArchiveImage], format: ArchiveFormat) -> Result<W> {
        write_layout(store, images, format, &mut self.sink)?;
        self.sink.tar.into_inner().context("finishing the archive")
    }
}

/// Writes the archive's files into the directory `dir` (created if needed). Blobs
/// already there are kept; `index.json` is replaced last.
pub fn write_layout_dir(store: &Store, images: &[ArchiveImage], format: ArchiveFormat, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut sink = DirSink(store, dir.to_path_buf());
    sink.dir("blobs/")?;
    sink.dir("blobs/sha256/")?;
    write_layout(store, images, format, &mut sink)
}

/// `layer` in `compression` for an OCI layout directory being written: a layer the
/// store does not have so yet is compressed into a new store variant and into the
/// layout's `blobs/sha256/` at once, rather than copied there after.
pub fn add_layer_to_dir(
    store: &Store,
    layer: &LayerInfo,
    compression: Option<(Compression, Option<i32>)>,
    dir: &Path,
) -> Result<LayerInfo> {
    let Some((compression, level)) = compression else { return Ok(layer.clone()) };
    if let Some(stored) = stored_compression(store, layer, compression, level) {
        return Ok(stored);
    }
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).with_context(|| format!("creating {}", blobs.display()))?;
    let temp = tempfile::Builder::new()
        .prefix(".builder-blob-")
        .permissions(user_file_mode())
        .tempfile_in(&blobs)
        .with_context(|| format!("creating a temp file in {}", blobs.display()))?;
    let copy = temp.as_file().try_clone().context("opening the temp file")?;
    let converted = compress_layer(store, layer, compression, level, Some(copy))?;
    let path = blobs.join(converted.digest.hex());
    temp.persist(&path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(converted)
}

/// Where the files of an archive go.
trait Sink {
    fn dir(&mut self, name: &str) -> Result<()>;
    fn file(&mut self, name: &str, bytes: &[u8]) -> Result<()>;
    fn blob(&mut self, store: &Store, digest: &Digest) -> Result<()>;
}

struct TarSink<W: ArchiveWrite> {
    tar: tar::Builder<W>,
    /// The blobs in the archive so far.
    written: HashSet<Digest>,
}

impl<W: ArchiveWrite> TarSink<W> {
    /// Compresses `layer` into a new store variant and into the archive at once,
    /// through `file`, the output's own file: a header with room for the blob's name
    /// and size (known once it is compressed), the bytes, the padding.
    fn stream_layer(
        &mut self,
        store: &Store,
        layer: &LayerInfo,
        compression: Compression,
        level: Option<i32>,
        mut file: File,
    ) -> Result<LayerInfo> {
        let streamed = (|| {
            let start = file.stream_position()?;
            file.write_all(&[0; 512])?;
            let copy = file.try_clone()?;
            let converted = compress_layer(store, layer, compression, level, Some(copy))?;
            let end = file.stream_position()?;
            if end != start + 512 + converted.size {
                bail!("wrote {} bytes of a {}-byte blob", end - start - 512, converted.size);
            }
            let mut h = header(converted.size, 0o644);
            h.set_path(blob_name(&converted.digest))?;
            h.set_cksum();
            file.write_all_at(h.as_bytes(), start)?;
            let padding = (512 - converted.size % 512) % 512;
            file.write_all(&[0; 512][..padding as usize])?;
            Ok(converted)
        })();
        let converted = streamed.with_context(|| format!("compressing layer {} into the archive", layer.diff_id))?;
        self.written.insert(converted.digest.clone());
        Ok(converted)
    }
}

impl<W: ArchiveWrite> Sink for TarSink<W> {
    fn dir(&mut self, name: &str) -> Result<()> {
        dir_entry(&mut self.tar, name)
    }

    fn file(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        file_entry(&mut self.tar, name, bytes)
    }

    fn blob(&mut self, store: &Store, digest: &Digest) -> Result<()> {
        if !self.written.insert(digest.clone()) {
            return Ok(());
        }
        let size = store.blob_size(digest)?;
        let mut h = header(size, 0o644);
        h.set_path(blob_name(digest)).with_context(|| format!("naming blob {digest}"))?;
        h.set_cksum();
        // The header through the builder's writer, the content appended by the output
        // itself (in the kernel for a file), then the padding to a 512-byte block.
        let out = self.tar.get_mut();
        let written = (|| -> Result<()> {
            out.write_all(h.as_bytes())?;
            if store.has_blob_file(digest) {
                out.append_blob(&mut store.open_blob(digest)?, size)?;
            } else {
                // A packed layer: its tar made again from its snapshot.
                copy_exactly_from(&mut crate::layer::open_blob_or_layer(store, digest)?, size, out)?;
            }
            let padding = (512 - size % 512) % 512;
            Ok(out.write_all(&[0; 512][..padding as usize])?)
        })();
        written.with_context(|| format!("writing blob {digest}"))
    }
}

struct DirSink<'a>(&'a Store, PathBuf);

impl DirSink<'_> {
    fn put(&self, name: &str, write: impl FnOnce(&mut OutputFile) -> Result<()>) -> Result<()> {
        write_file_atomically(self.0, &self.1.join(name), write)
    }
}

impl Sink for DirSink<'_> {
    fn dir(&mut self, name: &str) -> Result<()> {
        let path = self.1.join(name);
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))
    }

    fn file(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        self.put(name, |w| Ok(w.write_all(bytes)?))
    }

    fn blob(&mut self, store: &Store, digest: &Digest) -> Result<()> {
        let name = blob_name(digest);
        let size = store.blob_size(digest)?;
        if std::fs::metadata(self.1.join(&name)).is_ok_and(|m| m.len() == size) {
            return Ok(());
        }
        self.put(&name, |w| {
            if store.has_blob_file(digest) {
                w.append_blob(&mut store.open_blob(digest)?, size)
            } else {
                copy_exactly_from(&mut crate::layer::open_blob_or_layer(store, digest)?, size, w)
            }
            .with_context(|| format!("writing blob {digest}"))
        })
    }
}

fn write_layout(store: &Store, images: &[ArchiveImage], format: ArchiveFormat, sink: &mut dyn Sink) -> Result<()> {
    // The names each manifest is saved under, in the order asked.
    let mut tags: BTreeMap<Digest, Vec<Reference>> = BTreeMap::new();
    let mut order: Vec<&Image> = Vec::new();
    for entry in images {
        let image = &entry.image;
        if !order.iter().any(|i| i.manifest_digest == image.manifest_digest) {
            order.push(image);
        }
        let names = tags.entry(image.manifest_digest.clone()).or_default();
        for reference in &entry.names {
            if !names.contains(reference) {
                names.push(reference.clone());
            }
        }
    }

    // Each image's layers, config and manifest, in that order, each blob once.
    let mut blobs: Vec<Digest> = Vec::new();
    let mut index = Index {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_OCI_INDEX.into()),
        manifests: Vec::new(),
        annotations: None,
    };
    let mut docker_manifest = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for image in &order {
        for digest in image.layers.iter().map(|l| &l.digest).chain([&image.config_digest, &image.manifest_digest]) {
            if !blobs.contains(digest) {
                blobs.push(digest.clone());
            }
        }
        let manifest_bytes = store.read_blob(&image.manifest_digest)?;
        let media_type = serde_json::from_slice::<serde_json::Value>(&manifest_bytes)?
            .get("mediaType")
            .and_then(|m| m.as_str())
            .unwrap_or(MEDIA_TYPE_OCI_MANIFEST)
            .to_string();
        let descriptor = Descriptor {
            media_type,
            digest: image.manifest_digest.clone(),
            size: manifest_bytes.len() as u64,
            annotations: None,
            platform: Some(Platform {
                architecture: image.config.architecture.clone(),
                os: image.config.os.clone(),
                variant: image.config.variant.clone(),
            }),
        };
        let names = &tags[&image.manifest_digest];
        if names.is_empty() {
            index.manifests.push(descriptor.clone());
        }
        for reference in names {
            let mut annotations = BTreeMap::new();
            annotations.insert("io.containerd.image.name".to_string(), reference.to_string());
            if let Some(tag) = &reference.tag {
                annotations.insert("org.opencontainers.image.ref.name".to_string(), tag.clone());
            }
            index.manifests.push(Descriptor { annotations: Some(annotations), ..descriptor.clone() });
            if let (Some(tag), Some(top)) = (&reference.tag, image.layers.last()) {
                let mut repo = reference.clone();
                repo.tag = None;
                repositories.entry(repo.familiar()).or_default().insert(tag.clone(), top.digest.hex().to_string());
            }
        }
        docker_manifest.push(DockerManifestEntry {
            config: blob_name(&image.config_digest),
            repo_tags: Some(names.iter().map(|r| r.familiar()).collect()),
            layers: image.layers.iter().map(|l| blob_name(&l.digest)).collect(),
        });
    }

    for digest in &blobs {
        sink.blob(store, digest)?;
    }
    sink.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    if format == ArchiveFormat::Docker {
        sink.file("manifest.json", &serde_json::to_vec(&docker_manifest)?)?;
        if !repositories.is_empty() {
            sink.file("repositories", &serde_json::to_vec(&repositories)?)?;
        }
    }
    // Last: a reader of a directory layout never sees an index without its blobs.
    sink.file("index.json", &serde_json::to_vec(&index)?)
}

/// The name an image is saved under: the normalised reference when `name` is one of
/// the store's refs for this image, none when it was asked by id or digest.
fn saved_name(store: &Store, name: &str, image: &Image) -> Result<Option<Reference>> {
    let Ok(reference) = Reference::parse(name) else { return Ok(None) };
    if reference.digest.is_some() {
        return Ok(None);
    }
    Ok(match store.get_ref(&reference.to_string())? {
        Some(d) if d == image.manifest_digest => Some(reference),
        _ => None,
    })
}

fn header(size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn dir_entry<W: Write>(tar: &mut tar::Builder<W>, name: &str) -> Result<()> {
    let mut h = header(0, 0o755);
    h.set_entry_type(tar::EntryType::Directory);
    tar.append_data(&mut h, name, std::io::empty())?;
    Ok(())
}

fn file_entry<W: Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> Result<()> {
    let mut h = header(bytes.len() as u64, 0o644);
    tar.append_data(&mut h, name, bytes)?;
    Ok(())
}
