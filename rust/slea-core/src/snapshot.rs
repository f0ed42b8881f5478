//! Versioned, checksummed, atomically written snapshot files: a small container that any
//! component can reuse (the experience library today; the clusterer or trainer checkpoints later).
//!
//! # Format (all integers little-endian)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `b"SLEASNAP"` |
//! | 8 | 4 | container format version (`u32`, currently [`FORMAT_VERSION`]) |
//! | 12 | 4 | schema version of the payload kind (`u32`, owned by the component) |
//! | 16 | 1 | length `K` of the kind name (1..=64) |
//! | 17 | K | kind name, printable ASCII (e.g. `slea.library`) |
//! | .. | 4 | section count `S` (`u32`) |
//! | .. | | `S` sections, each: name length `N` (`u8`, 1..=64), name (printable ASCII), payload length `L` (`u64`), `L` payload bytes |
//! | end-8 | 8 | xxh3-64 of every preceding byte (`u64`) |
//!
//! Reading checks, in order: the magic, the container version (a newer one gets a message asking
//! for a newer slea), the checksum, the kind, the schema version (same message), then the section
//! table (bounds, unique names, no trailing bytes). Any mismatch is an [`Error::Snapshot`]; nothing
//! is deserialised before the checksum has passed. Section payloads are opaque here; components
//! encode them with [`ByteWriter`] / [`ByteReader`] or JSON.
//!
//! Writing ([`write_atomic`]) goes to a temporary file in the target's directory, which is
//! fsynced, renamed over the target and followed by an fsync of the directory, so a crash at any
//! point leaves either the old file or the new one, never a mix. A crash can leave the temporary
//! file (`.NAME.PID.N.tmp`) behind; it is never read.

use crate::error::{Error, Result};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use xxhash_rust::xxh3::xxh3_64;

/// First 8 bytes of every snapshot.
pub const MAGIC: [u8; 8] = *b"SLEASNAP";
/// Container format version written by this build (and the newest it reads).
pub const FORMAT_VERSION: u32 = 1;
const MAX_NAME: usize = 64;

/// Builds a snapshot: a kind, its schema version and named sections.
#[derive(Debug, Clone)]
pub struct SnapshotWriter {
    kind: String,
    schema_version: u32,
    sections: Vec<(String, Vec<u8>)>,
}

impl SnapshotWriter {
    /// New writer for `kind` (printable ASCII, 1..=64 bytes) at `schema_version`.
    pub fn new(kind: &str, schema_version: u32) -> Result<Self> {
        check_name("kind", kind)?;
        Ok(SnapshotWriter {
            kind: kind.to_string(),
            schema_version,
            sections: Vec::new(),
        })
    }

    /// Append a section. Names are printable ASCII, 1..=64 bytes, unique within the snapshot.
    pub fn add(&mut self, name: &str, payload: Vec<u8>) -> Result<()> {
        check_name("section name", name)?;
        if self.sections.iter().any(|(n, _)| n == name) {
            return Err(Error::invalid(
                "section name",
                format!("'{name}' added twice"),
            ));
        }
        self.sections.push((name.to_string(), payload));
        Ok(())
    }

    /// The complete file contents.
    pub fn to_bytes(&self) -> Vec<u8> {
        let payload: usize = self
            .sections
            .iter()
            .map(|(n, p)| n.len() + p.len() + 9)
            .sum();
        let mut out = Vec::with_capacity(33 + self.kind.len() + payload);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&self.schema_version.to_le_bytes());
        out.push(self.kind.len() as u8);
        out.extend_from_slice(self.kind.as_bytes());
        out.extend_from_slice(&(self.sections.len() as u32).to_le_bytes());
        for (name, p) in &self.sections {
            out.push(name.len() as u8);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(p.len() as u64).to_le_bytes());
            out.extend_from_slice(p);
        }
        let sum = xxh3_64(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    /// Write atomically to `path` (see [`write_atomic`]).
    pub fn write(&self, path: &Path) -> Result<()> {
        write_atomic(path, &self.to_bytes())
    }
}

/// A parsed snapshot borrowing its sections from the file bytes.
#[derive(Debug)]
pub struct Snapshot<'a> {
    kind: &'a str,
    format_version: u32,
    schema_version: u32,
    sections: Vec<(&'a str, &'a [u8])>,
}

impl<'a> Snapshot<'a> {
    /// Parse and verify `bytes` as a snapshot of `kind` with schema version at most `max_schema`.
    pub fn parse(bytes: &'a [u8], kind: &str, max_schema: u32) -> Result<Self> {
        let s = Snapshot::parse_any(bytes)?;
        if s.kind != kind {
            return Err(Error::snapshot(format!(
                "this is a '{}' snapshot, expected '{kind}'",
                s.kind
            )));
        }
        if s.schema_version > max_schema {
            return Err(Error::snapshot(format!(
                "'{kind}' schema version {} is newer than this slea reads ({max_schema}): \
                 upgrade slea to load it",
                s.schema_version
            )));
        }
        Ok(s)
    }

    /// Parse and verify the container of any kind (used to describe a file).
    pub fn parse_any(bytes: &'a [u8]) -> Result<Self> {
        if bytes.len() < 8 || bytes[..8] != MAGIC {
            return Err(Error::snapshot("not a slea snapshot (bad magic bytes)"));
        }
        let mut r = ByteReader::new(&bytes[8..], "header");
        let format_version = r.u32()?;
        if format_version > FORMAT_VERSION {
            return Err(Error::snapshot(format!(
                "format version {format_version} is newer than this slea reads \
                 ({FORMAT_VERSION}): upgrade slea to load it (or the file is corrupt)"
            )));
        }
        if format_version == 0 {
            return Err(Error::snapshot(
                "format version 0 is not valid (corrupt file)",
            ));
        }
        if bytes.len() < 8 + 4 + 4 + 1 + 4 + 8 {
            return Err(Error::snapshot("file is truncated"));
        }
        let (body, tail) = bytes.split_at(bytes.len() - 8);
        let mut want = [0u8; 8];
        want.copy_from_slice(tail);
        if xxh3_64(body) != u64::from_le_bytes(want) {
            return Err(Error::snapshot(
                "checksum mismatch: the file is corrupt or truncated",
            ));
        }
        let mut r = ByteReader::new(&body[12..], "header");
        let schema_version = r.u32()?;
        let kind = r.name("kind")?;
        let count = r.u32()? as usize;
        let mut sections: Vec<(&str, &[u8])> = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            let name = r.name("section name")?;
            if sections.iter().any(|(n, _)| *n == name) {
                return Err(Error::snapshot(format!("section '{name}' appears twice")));
            }
            let len = r.u64()?;
            let len = usize::try_from(len).map_err(|_| Error::snapshot("section too large"))?;
            sections.push((name, r.bytes(len)?));
        }
        if !r.is_empty() {
            return Err(Error::snapshot("trailing bytes after the last section"));
        }
        Ok(Snapshot {
            kind,
            format_version,
            schema_version,
            sections,
        })
    }

    /// Kind name written in the header.
    pub fn kind(&self) -> &'a str {
        self.kind
    }

    /// Container format version of the file.
    pub fn format_version(&self) -> u32 {
        self.format_version
    }

    /// Schema version of the payload kind.
    pub fn schema_version(&self) -> u32 {
        self.schema_version
    }

    /// `(name, payload length)` of every section, in file order.
    pub fn section_sizes(&self) -> Vec<(String, usize)> {
        self.sections
            .iter()
            .map(|(n, p)| (n.to_string(), p.len()))
            .collect()
    }

    /// The payload of section `name`; a missing section is an [`Error::Snapshot`].
    pub fn section(&self, name: &str) -> Result<&'a [u8]> {
        self.sections
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| *p)
            .ok_or_else(|| Error::snapshot(format!("section '{name}' is missing")))
    }
}

/// Read a whole file, mapping failures to [`Error::Io`] with the path.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Write `bytes` to `path` atomically: temporary file in the same directory, `fsync`, rename over
/// `path`, `fsync` of the directory. On failure the temporary file is removed and `path` is
/// untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::invalid("path", format!("{} has no file name", path.display())))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(
        ".{}.{}.{n}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(format!("writing {}", path.display()), e));
    }
    sync_dir(&dir).map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

fn check_name(arg: &str, name: &str) -> Result<()> {
    let ok =
        !name.is_empty() && name.len() <= MAX_NAME && name.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            arg,
            format!("'{name}' must be 1..={MAX_NAME} printable ASCII characters"),
        ))
    }
}

/// Little-endian encoder for section payloads.
#[derive(Debug, Default, Clone)]
pub struct ByteWriter {
    buf: Vec<u8>,
}

impl ByteWriter {
    /// Empty writer.
    pub fn new() -> Self {
        Self::default()
    }
    /// Append a `u8`.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    /// Append a `u32`.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Append a `u64`.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Append an `f64`.
    pub fn f64(&mut self, v: f64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Append `f32` values (no length prefix).
    pub fn f32s(&mut self, v: &[f32]) {
        self.buf.reserve(v.len() * 4);
        for x in v {
            self.buf.extend_from_slice(&x.to_le_bytes());
        }
    }
    /// Append a length-prefixed (`u64`) byte string.
    pub fn bytes(&mut self, v: &[u8]) {
        self.u64(v.len() as u64);
        self.buf.extend_from_slice(v);
    }
    /// Append a length-prefixed UTF-8 string.
    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    /// The encoded bytes.
    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }
}

/// Little-endian decoder for section payloads; every failure is an [`Error::Snapshot`] naming
/// the context (the section).
#[derive(Debug)]
pub struct ByteReader<'a> {
    b: &'a [u8],
    pos: usize,
    context: &'static str,
}

impl<'a> ByteReader<'a> {
    /// Reader over `b`; `context` names it in error messages.
    pub fn new(b: &'a [u8], context: &'static str) -> Self {
        ByteReader { b, pos: 0, context }
    }
    /// True when every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.pos == self.b.len()
    }
    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| Error::snapshot(format!("{}: truncated", self.context)))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }
    /// A `u8`.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }
    /// A `u32`.
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    /// A `u64`.
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    /// An `f64`.
    pub fn f64(&mut self) -> Result<f64> {
        Ok(f64::from_le_bytes(self.array()?))
    }
    /// `n` `f32` values.
    pub fn f32s(&mut self, n: usize) -> Result<Vec<f32>> {
        let len = n
            .checked_mul(4)
            .ok_or_else(|| Error::snapshot(format!("{}: length overflow", self.context)))?;
        let raw = self.bytes(len)?;
        Ok(raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
    /// A length-prefixed byte string.
    pub fn len_bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.u64()?;
        let n = usize::try_from(n)
            .map_err(|_| Error::snapshot(format!("{}: length overflow", self.context)))?;
        self.bytes(n)
    }
    /// A length-prefixed UTF-8 string.
    pub fn str(&mut self) -> Result<&'a str> {
        let b = self.len_bytes()?;
        std::str::from_utf8(b)
            .map_err(|_| Error::snapshot(format!("{}: invalid UTF-8", self.context)))
    }
    fn name(&mut self, what: &str) -> Result<&'a str> {
        let n = self.u8()? as usize;
        let b = self.bytes(n)?;
        let s = std::str::from_utf8(b)
            .ok()
            .filter(|s| check_name(what, s).is_ok());
        s.ok_or_else(|| Error::snapshot(format!("{}: invalid {what}", self.context)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<u8> {
        let mut w = SnapshotWriter::new("slea.test", 3).unwrap();
        w.add("meta", b"{\"a\":1}".to_vec()).unwrap();
        let mut b = ByteWriter::new();
        b.u64(7);
        b.str("héllo");
        b.f32s(&[1.0, -2.5]);
        w.add("data", b.into_inner()).unwrap();
        w.add("empty", Vec::new()).unwrap();
        w.to_bytes()
    }

    #[test]
    fn round_trip() {
        let bytes = sample();
        let s = Snapshot::parse(&bytes, "slea.test", 3).unwrap();
        assert_eq!(s.kind(), "slea.test");
        assert_eq!(s.schema_version(), 3);
        assert_eq!(s.section("meta").unwrap(), b"{\"a\":1}");
        assert_eq!(s.section("empty").unwrap(), b"");
        let mut r = ByteReader::new(s.section("data").unwrap(), "data");
        assert_eq!(r.u64().unwrap(), 7);
        assert_eq!(r.str().unwrap(), "héllo");
        assert_eq!(r.f32s(2).unwrap(), vec![1.0, -2.5]);
        assert!(r.is_empty());
        assert!(r.u8().is_err());
        assert!(s
            .section("nope")
            .unwrap_err()
            .to_string()
            .contains("missing"));
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let bytes = sample();
        for i in 0..bytes.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= mask;
                assert!(
                    Snapshot::parse(&b, "slea.test", 3).is_err(),
                    "flip {mask:#x} at byte {i} not detected"
                );
            }
        }
        for n in 0..bytes.len() {
            assert!(Snapshot::parse(&bytes[..n], "slea.test", 3).is_err());
        }
    }

    #[test]
    fn newer_versions_get_a_clear_message() {
        let mut w = SnapshotWriter::new("slea.test", 9).unwrap();
        w.add("x", vec![1]).unwrap();
        let bytes = w.to_bytes();
        let e = Snapshot::parse(&bytes, "slea.test", 3)
            .unwrap_err()
            .to_string();
        assert!(e.contains("schema version 9 is newer"), "{e}");
        let e = Snapshot::parse(&bytes, "slea.other", 9)
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected 'slea.other'"), "{e}");
        // A newer container version, with a valid checksum.
        let mut b = bytes[..bytes.len() - 8].to_vec();
        b[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        let sum = xxh3_64(&b);
        b.extend_from_slice(&sum.to_le_bytes());
        let e = Snapshot::parse(&b, "slea.test", 9).unwrap_err().to_string();
        assert!(e.contains("format version 2 is newer"), "{e}");
    }

    #[test]
    fn writer_rejects_bad_names() {
        assert!(SnapshotWriter::new("", 1).is_err());
        assert!(SnapshotWriter::new("has space", 1).is_err());
        let mut w = SnapshotWriter::new("k", 1).unwrap();
        w.add("a", vec![]).unwrap();
        assert!(w.add("a", vec![]).is_err());
        assert!(w.add(&"x".repeat(65), vec![]).is_err());
    }

    #[test]
    fn atomic_write_replaces_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lib.snap");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left behind");
        // Writing over a directory fails and leaves nothing behind.
        let sub = dir.path().join("sub");
        fs::create_dir(&sub).unwrap();
        fs::write(sub.join("f"), b"x").unwrap();
        assert!(write_atomic(&sub, b"x").is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
        assert!(write_atomic(Path::new("/"), b"x").is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Snapshot::parse_any(&b);
            let mut with_magic = MAGIC.to_vec();
            with_magic.extend_from_slice(&b);
            let _ = Snapshot::parse_any(&with_magic);
        }

        #[test]
        fn checksummed_garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            // Valid magic, version and checksum around arbitrary content: parsing must fail cleanly.
            let mut body = MAGIC.to_vec();
            body.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
            body.extend_from_slice(&b);
            let sum = xxh3_64(&body);
            body.extend_from_slice(&sum.to_le_bytes());
            let _ = Snapshot::parse_any(&body);
        }
    }
}
