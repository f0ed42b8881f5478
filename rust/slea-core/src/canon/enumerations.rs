//! `sort_enumerations`: makes the order of listed items irrelevant (see the module docs of
//! [`crate::canon`] for the definition). One pass over the bytes finds the segments that hold a
//! list; only those are split into words and rewritten, everything else is copied in bulk.

use std::mem;

/// A small set of words. Words of up to 8 bytes are compared as one `u64` (no `memcmp` call).
#[derive(Debug, Clone)]
pub(super) struct WordSet {
    short: Vec<(usize, u64)>,
    long: Vec<Vec<u8>>,
    max_len: usize,
}

#[inline]
fn pack(w: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a[..w.len()].copy_from_slice(w);
    u64::from_le_bytes(a)
}

impl WordSet {
    pub(super) fn new(words: &[String]) -> Self {
        let (short, long): (Vec<&String>, Vec<&String>) = words.iter().partition(|w| w.len() <= 8);
        WordSet {
            short: short
                .iter()
                .map(|w| (w.len(), pack(w.as_bytes())))
                .collect(),
            long: long.iter().map(|w| w.as_bytes().to_vec()).collect(),
            max_len: words.iter().map(String::len).max().unwrap_or(0),
        }
    }

    #[inline]
    fn contains(&self, w: &[u8]) -> bool {
        if w.len() > self.max_len {
            return false;
        }
        if w.len() <= 8 {
            let key = pack(w);
            return self.short.iter().any(|&(n, k)| n == w.len() && k == key);
        }
        self.long.iter().any(|x| x.as_slice() == w)
    }
}

#[derive(Debug, Clone)]
pub(super) struct EnumSorter {
    pub(super) articles: WordSet,
    pub(super) conjunctions: WordSet,
    pub(super) stop_words: WordSet,
    pub(super) lines: bool,
}

/// Byte classes: 0 other, 1 space, 2 segment delimiter (`. ! ? ; :` and newline).
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b' ' as usize] = 1;
    let delims = *b".!?;:\n";
    let mut i = 0;
    while i < delims.len() {
        t[delims[i] as usize] = 2;
        i += 1;
    }
    t
};

impl EnumSorter {
    pub(super) fn apply(&self, src: &str, dst: &mut String) -> bool {
        let b = src.as_bytes();
        let n = b.len();
        let mut changed = false;
        let mut copied = 0;
        let mut seg_start = 0;
        while seg_start <= n {
            // One segment: skip its leading spaces, then walk its words.
            let mut i = seg_start;
            while i < n && b[i] == b' ' {
                i += 1;
            }
            let mut word_start = i;
            let mut prev: &[u8] = &[];
            let mut words = 0usize;
            let mut found = false;
            loop {
                let class = if i < n { CLASS[b[i] as usize] } else { 2 };
                if class == 0 {
                    i += 1;
                    continue;
                }
                let word = &b[word_start..i];
                if !found && words >= 1 && self.breaks_at(words >= 2, prev, word) {
                    found = true;
                }
                prev = word;
                words += 1;
                if class == 2 {
                    break;
                }
                i += 1;
                word_start = i;
            }
            if found {
                dst.push_str(&src[copied..seg_start]);
                self.sort_segment(&src[seg_start..i], dst);
                copied = i;
                changed = true;
            }
            seg_start = i + 1;
        }
        if changed {
            dst.push_str(&src[copied..]);
        }
        if self.lines {
            let text: &str = if changed { dst } else { src };
            if self.has_article_run(text) {
                let sorted = self.sort_lines(text);
                *dst = sorted;
                changed = true;
            }
        }
        changed
    }

    /// True when an item starts at `word` (`prev2`: there is a word before `prev`).
    #[inline]
    fn breaks_at(&self, prev2: bool, prev: &[u8], word: &[u8]) -> bool {
        self.articles.contains(word)
            && (prev.last() == Some(&b',') || (prev2 && self.conjunctions.contains(prev)))
    }

    /// Append the segment (which holds a list) to `dst` with its items sorted.
    fn sort_segment(&self, seg: &str, dst: &mut String) {
        let core = seg.trim_matches(' ');
        let lead = &seg[..seg.len() - seg.trim_start_matches(' ').len()];
        let trail = &seg[seg.trim_end_matches(' ').len()..];
        let words: Vec<&str> = core.split(' ').collect();
        let mut bounds = vec![0];
        for i in 1..words.len() {
            if self.breaks_at(i >= 2, words[i - 1].as_bytes(), words[i].as_bytes()) {
                bounds.push(i);
            }
        }
        bounds.push(words.len());
        let n_chunks = bounds.len() - 1;
        let mut chunks: Vec<Vec<&str>> = Vec::with_capacity(n_chunks);
        let mut conjunction: Option<&str> = None;
        for k in 0..n_chunks {
            let mut chunk = words[bounds[k]..bounds[k + 1]].to_vec();
            if k + 1 < n_chunks {
                let ends_with_conj = chunk
                    .last()
                    .is_some_and(|w| self.conjunctions.contains(w.as_bytes()));
                if chunk.len() >= 2 && ends_with_conj {
                    if k + 2 == n_chunks {
                        conjunction = chunk.last().copied();
                    }
                    chunk.pop();
                }
                if let Some(w) = chunk.last_mut() {
                    if let Some(stripped) = w.strip_suffix(',') {
                        *w = stripped;
                    }
                }
            }
            chunks.push(chunk);
        }
        let first = mem::take(&mut chunks[0]);
        let j = first
            .iter()
            .rposition(|w| self.articles.contains(w.as_bytes()))
            .unwrap_or(0);
        let prefix = &first[..j];
        chunks[0] = first[j..].to_vec();
        let last = mem::take(&mut chunks[n_chunks - 1]);
        let m = (2..last.len())
            .find(|&i| self.stop_words.contains(last[i].as_bytes()))
            .unwrap_or(last.len());
        let suffix = &last[m..];
        chunks[n_chunks - 1] = last[..m].to_vec();
        let mut items: Vec<String> = chunks.iter().map(|c| c.join(" ")).collect();
        items.sort_unstable();
        dst.push_str(lead);
        for w in prefix {
            dst.push_str(w);
            dst.push(' ');
        }
        let n = items.len();
        for (k, item) in items.iter().enumerate() {
            if k > 0 {
                match conjunction {
                    Some(c) if k + 1 == n => {
                        dst.push(' ');
                        dst.push_str(c);
                        dst.push(' ');
                    }
                    _ => dst.push_str(", "),
                }
            }
            dst.push_str(item);
        }
        for w in suffix {
            dst.push(' ');
            dst.push_str(w);
        }
        dst.push_str(trail);
    }

    fn starts_with_article(&self, line: &[u8]) -> bool {
        let a = line
            .iter()
            .position(|&c| c != b' ' && c != b'\t')
            .unwrap_or(line.len());
        let rest = &line[a..];
        let end = rest.iter().position(|&c| c == b' ').unwrap_or(rest.len());
        self.articles.contains(&rest[..end])
    }

    /// True when two consecutive lines start with an article.
    fn has_article_run(&self, text: &str) -> bool {
        let mut prev = false;
        for line in text.as_bytes().split(|&c| c == b'\n') {
            let cur = self.starts_with_article(line);
            if prev && cur {
                return true;
            }
            prev = cur;
        }
        false
    }

    /// The text with every run of two or more article lines sorted.
    fn sort_lines(&self, text: &str) -> String {
        let lines: Vec<&str> = text.split('\n').collect();
        let mut flags: Vec<bool> = lines
            .iter()
            .map(|l| self.starts_with_article(l.as_bytes()))
            .collect();
        flags.push(false);
        let mut out: Vec<&str> = Vec::with_capacity(lines.len());
        let mut run_start = 0;
        for (i, line) in lines.iter().enumerate() {
            if !flags[i] {
                out.push(line);
                run_start = i + 1;
                continue;
            }
            if !flags[i + 1] {
                let mut run = lines[run_start..=i].to_vec();
                run.sort_unstable();
                out.extend(run);
            }
        }
        out.join("\n")
    }
}
