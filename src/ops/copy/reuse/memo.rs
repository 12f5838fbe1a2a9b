//! The memo's file: a flat binary record per copied file, because it holds one for
//! every file of the context and is read and written by every run of the COPY (as
//! JSON, 20k files made 5 MB that took 20 ms to parse).
//!
//! `BLDCOPY1`, the chain ID and the layer's diffID (u16 length + text, the layer's
//! empty when unknown), a u64 count, then per file: u16 length + destination path,
//! the source's 32-byte content digest, uid, gid and mode (u32), mtime seconds and
//! nanoseconds (i64), and a byte that is 1 when the source's stat identity
//! (`StatKey::to_bytes`) follows. Numbers are little-endian.

use super::Written;
use crate::ops::context::StatKey;
use anyhow::{Context as _, Result, bail};
use image_spec::Digest;

const MAGIC: &[u8; 8] = b"BLDCOPY1";

/// What one run of a COPY remembers for the next.
pub(super) struct Memo {
    /// The chain ID of the result's top layer: its snapshot.
    pub chain: Digest,
    /// The diffID of the result's top layer: the layer's hash may resume from its
    /// checkpoints (`layer::resume`).
    pub layer: Option<Digest>,
    /// (destination path relative to the layer root, what the copy wrote there), in
    /// the batches the copy wrote them in (one when read back).
    pub files: Vec<Vec<(String, Written)>>,
}

impl Memo {
    pub fn encode(&self) -> Result<Vec<u8>> {
        let count: usize = self.files.iter().map(Vec::len).sum();
        let mut out = Vec::with_capacity(64 + count * 128);
        out.extend_from_slice(MAGIC);
        put_text(&mut out, self.chain.as_str())?;
        put_text(&mut out, self.layer.as_ref().map_or("", Digest::as_str))?;
        out.extend_from_slice(&(count as u64).to_le_bytes());
        for (path, w) in self.files.iter().flatten() {
            put_text(&mut out, path)?;
            out.extend_from_slice(&w.digest);
            for n in [w.ids.0, w.ids.1, w.mode] {
                out.extend_from_slice(&n.to_le_bytes());
            }
            out.extend_from_slice(&w.mtime.0.to_le_bytes());
            out.extend_from_slice(&w.mtime.1.to_le_bytes());
            match &w.plain_source {
                Some(key) => {
                    out.push(1);
                    out.extend_from_slice(&key.to_bytes());
                }
                None => out.push(0),
            }
        }
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<Memo> {
        let mut r = Reader(bytes);
        if r.take(MAGIC.len())? != MAGIC {
            bail!("not a copy memo");
        }
        let chain = Digest::parse(r.text()?).context("chain ID")?;
        let layer = match r.text()? {
            "" => None,
            text => Some(Digest::parse(text).context("layer")?),
        };
        let count = u64::from_le_bytes(r.array()?);
        let mut files = Vec::with_capacity(count.min(bytes.len() as u64 / 64) as usize);
        for _ in 0..count {
            let path = r.text()?.to_string();
            let digest = r.array()?;
            let ids = (u32::from_le_bytes(r.array()?), u32::from_le_bytes(r.array()?));
            let mode = u32::from_le_bytes(r.array()?);
            let mtime = (i64::from_le_bytes(r.array()?), i64::from_le_bytes(r.array()?));
            let plain_source = match r.take(1)? {
                [0] => None,
                [1] => Some(StatKey::from_bytes(r.array()?)),
                _ => bail!("bad record for {path}"),
            };
            files.push((path, Written { digest, ids, mode, mtime, plain_source }));
        }
        if !r.0.is_empty() {
            bail!("{} bytes after the last record", r.0.len());
        }
        Ok(Memo { chain, layer, files: vec![files] })
    }
}

fn put_text(out: &mut Vec<u8>, text: &str) -> Result<()> {
    let len = u16::try_from(text.len()).with_context(|| format!("path too long for a copy memo: {text}"))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            bail!("truncated copy memo");
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into()?)
    }

    fn text(&mut self) -> Result<&'a str> {
        let len = u16::from_le_bytes(self.array()?);
        Ok(std::str::from_utf8(self.take(len as usize)?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "x").unwrap();
        let key = StatKey::of(&std::fs::metadata(dir.path().join("f")).unwrap());
        let written = |plain_source| Written { digest: [7; 32], ids: (1, 2), mode: 0o640, mtime: (3, 4), plain_source };
        let memo = Memo {
            chain: Digest::of(b"chain"),
            layer: None,
            files: vec![vec![("app/a".into(), written(Some(key)))], vec![("app/b c".into(), written(None))]],
        };
        let bytes = memo.encode().unwrap();
        let back = Memo::decode(&bytes).unwrap();
        let flat = |files: Vec<Vec<(String, Written)>>| files.into_iter().flatten().collect::<Vec<_>>();
        assert_eq!((back.chain, back.layer, flat(back.files)), (memo.chain.clone(), None, flat(memo.files.clone())));
        let with_layer = Memo { layer: Some(Digest::of(b"layer")), files: vec![], ..memo };
        assert_eq!(Memo::decode(&with_layer.encode().unwrap()).unwrap().layer, with_layer.layer);
        for cut in [0, 8, bytes.len() - 1] {
            assert!(Memo::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Memo::decode(&longer).is_err());
    }
}
