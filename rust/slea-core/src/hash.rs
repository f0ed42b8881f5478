//! Hashes of canonical text: the structural hash, SimHash-64 fingerprints and the line sets the
//! clusterer's similarity is computed on. Every function here is a pure function of its input,
//! with the same value in every process, run and platform.
//!
//! - [`structural_hash`]: xxh3-64 (seed 0) of the UTF-8 bytes.
//! - [`simhash`]: 64-bit SimHash of word 3-shingles taken within each line, so that, like the
//!   clusterer's line-set similarity, it does not depend on the order of the lines. Words are
//!   maximal runs of characters that are neither white space nor ASCII punctuation. A word of UTF-8 bytes `w` hashes to `h = len(w)`
//!   then `h = mix64(h ^ chunk)` for each 8-byte little-endian chunk of `w` (the last one padded
//!   with zeros), where `mix64` is the SplitMix64 finaliser. A shingle of words `w0 w1 w2` hashes
//!   to `mix64(rotl(h0, 42) ^ rotl(h1, 21) ^ h2)`; a line of two words `w0 w1` is one shingle
//!   `mix64(rotl(h0, 21) ^ h1)`, a line of one word `mix64(h0)`. Bit `j` of the SimHash is set
//!   when more than half of all the shingles have bit `j` set. No words: 0.
//! - [`line_hashes`] / [`line_jaccard`]: the set of xxh3-64 hashes of the lines (split on `\n`),
//!   and the Jaccard index of two such sets.

use xxhash_rust::xxh3::xxh3_64;

/// Words per SimHash shingle.
pub const SHINGLE: usize = 3;

/// Structural hash of an already canonical text: xxh3-64 of its UTF-8 bytes.
#[inline]
pub fn structural_hash(canonical: &str) -> u64 {
    xxh3_64(canonical.as_bytes())
}

/// SplitMix64 finaliser: a bijective 64-bit mixer.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Hash of one word (see the module docs).
#[inline]
pub fn word_hash(bytes: &[u8]) -> u64 {
    let mut h = bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        h = mix64(h ^ u64::from_le_bytes(a));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut a = [0u8; 8];
        a[..rest.len()].copy_from_slice(rest);
        h = mix64(h ^ u64::from_le_bytes(a));
    }
    h
}

#[inline]
fn is_separator_byte(c: u8) -> bool {
    c == b' ' || (b'\t'..=b'\r').contains(&c) || c.is_ascii_punctuation()
}

/// Calls `f` with the [`word_hash`] of each word of `text`, in order.
fn for_each_word_hash(text: &str, mut f: impl FnMut(u64)) {
    let b = text.as_bytes();
    let n = b.len();
    let mut i = 0;
    while i < n {
        // Skip separators.
        while i < n {
            let c = b[i];
            if c < 0x80 {
                if !is_separator_byte(c) {
                    break;
                }
                i += 1;
            } else {
                let ch = text[i..].chars().next().unwrap_or('\0');
                if !ch.is_whitespace() {
                    break;
                }
                i += ch.len_utf8();
            }
        }
        let start = i;
        while i < n {
            let c = b[i];
            if c < 0x80 {
                if is_separator_byte(c) {
                    break;
                }
                i += 1;
            } else {
                let ch = text[i..].chars().next().unwrap_or('\0');
                if ch.is_whitespace() {
                    break;
                }
                i += ch.len_utf8();
            }
        }
        if i > start {
            f(word_hash(&b[start..i]));
        }
    }
}

/// Bit counts of a stream of 64-bit hashes, for a SimHash majority vote. Bit-sliced: `lanes[k]`
/// holds eight 8-bit counters, for bits `k, k + 8, ..., k + 56`, flushed to `ones` every 255 adds.
struct BitVote {
    lanes: [u64; 8],
    pending: u32,
    ones: [u64; 64],
    n: u64,
}

const LOW_BITS: u64 = 0x0101_0101_0101_0101;

impl BitVote {
    fn new() -> Self {
        BitVote {
            lanes: [0; 8],
            pending: 0,
            ones: [0; 64],
            n: 0,
        }
    }
    #[inline]
    fn add(&mut self, h: u64) {
        for (k, lane) in self.lanes.iter_mut().enumerate() {
            *lane += (h >> k) & LOW_BITS;
        }
        self.pending += 1;
        self.n += 1;
        if self.pending == 255 {
            self.flush();
        }
    }
    fn flush(&mut self) {
        for (k, lane) in self.lanes.iter_mut().enumerate() {
            for byte in 0..8 {
                self.ones[8 * byte + k] += (*lane >> (8 * byte)) & 0xff;
            }
            *lane = 0;
        }
        self.pending = 0;
    }
    fn finish(&mut self) -> u64 {
        self.flush();
        let mut out = 0u64;
        for (j, &c) in self.ones.iter().enumerate() {
            if 2 * c > self.n {
                out |= 1 << j;
            }
        }
        out
    }
}

/// SimHash-64 of the word 3-shingles of an already canonical text (see the module docs).
pub fn simhash(canonical: &str) -> u64 {
    let mut vote = BitVote::new();
    for line in canonical.split('\n') {
        let (mut h0, mut h1) = (0u64, 0u64);
        let mut words = 0usize;
        for_each_word_hash(line, |h| {
            words += 1;
            if words >= SHINGLE {
                vote.add(mix64(h0.rotate_left(42) ^ h1.rotate_left(21) ^ h));
            }
            h0 = h1;
            h1 = h;
        });
        match words {
            1 => vote.add(mix64(h1)),
            2 => vote.add(mix64(h0.rotate_left(21) ^ h1)),
            _ => {}
        }
    }
    if vote.n == 0 {
        0
    } else {
        vote.finish()
    }
}

/// The sorted, distinct xxh3-64 hashes of the lines of `canonical` (split on `\n`; an empty text
/// is one empty line).
pub fn line_hashes(canonical: &str) -> Vec<u64> {
    let mut out: Vec<u64> = canonical
        .split('\n')
        .map(|l| xxh3_64(l.as_bytes()))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Jaccard index `|a ∩ b| / |a ∪ b|` of two sorted, distinct hash sets (1.0 when both are empty).
pub fn line_jaccard(a: &[u64], b: &[u64]) -> f64 {
    let (mut i, mut j, mut inter) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                inter += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let union = a.len() + b.len() - inter;
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_answers() {
        // xxh3-64 reference vectors (seed 0).
        assert_eq!(structural_hash(""), 0x2d06_8005_38d3_94c2);
        assert_eq!(simhash(""), 0);
        assert_eq!(simhash(" ,.; "), 0);
        assert_eq!(simhash("hello"), mix64(word_hash(b"hello")));
        assert_eq!(simhash("a, b"), simhash("a b"));
        assert_eq!(
            simhash("one two three four\nfive six"),
            simhash("five six\none two three four")
        );
    }

    #[test]
    fn bit_vote_matches_a_plain_count() {
        let mut v = BitVote::new();
        let hs: Vec<u64> = (0..1000u64).map(|i| mix64(i) & mix64(i + 7)).collect();
        for &h in &hs {
            v.add(h);
        }
        let mut plain = 0u64;
        for j in 0..64 {
            let ones = hs.iter().filter(|&&h| (h >> j) & 1 == 1).count();
            if 2 * ones > hs.len() {
                plain |= 1 << j;
            }
        }
        assert_eq!(v.finish(), plain);
        assert_eq!(word_hash(b""), 0);
        assert_ne!(word_hash(b"abcdefgh"), word_hash(b"abcdefgh\0"));
    }

    #[test]
    fn jaccard() {
        let a = line_hashes("x\ny\nz");
        let b = line_hashes("y\nz\nw\nx");
        assert_eq!(line_jaccard(&a, &b), 0.75);
        assert_eq!(line_jaccard(&a, &a), 1.0);
        assert_eq!(line_hashes("a\na").len(), 1);
        assert_eq!(line_hashes("").len(), 1);
    }

    proptest! {
        #[test]
        fn simhash_is_close_for_small_edits(words in proptest::collection::vec("[a-z]{1,8}", 40..80), k in 0usize..40) {
            let text = words.join(" ");
            let mut edited = words.clone();
            edited[k] = "zzzzzzzzz".into();
            let d = (simhash(&text) ^ simhash(&edited.join(" "))).count_ones();
            // 3 of >= 38 shingles change: far fewer bits flip than between unrelated texts (32).
            prop_assert!(d <= 24, "{d}");
        }

        #[test]
        fn jaccard_is_symmetric_and_bounded(a in "[ab\n]{0,20}", b in "[ab\n]{0,20}") {
            let (ha, hb) = (line_hashes(&a), line_hashes(&b));
            let s = line_jaccard(&ha, &hb);
            prop_assert!((0.0..=1.0).contains(&s));
            prop_assert_eq!(s, line_jaccard(&hb, &ha));
        }
    }
}
