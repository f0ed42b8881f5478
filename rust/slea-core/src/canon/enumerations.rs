//! `sort_enumerations`: makes the order of listed items irrelevant (see the module docs of
//! [`crate::canon`] for the definition). A regex finds the places where an item can start; only
//! the segments holding one are split into words and rewritten, the rest is copied in bulk.

use regex::Regex;

/// A small set of words. Words of up to 8 bytes are compared as one `u64`, after a test of the
/// length against the lengths in the set (no `memcmp` call, no copy for most words).
#[derive(Debug, Clone)]
pub(super) struct WordSet {
    short: Vec<(usize, u64)>,
    long: Vec<Vec<u8>>,
    lengths: u64,
    max_len: usize,
}

#[inline]
fn pack(w: &[u8]) -> u64 {
    let mut k = 0u64;
    for (i, &c) in w.iter().enumerate() {
        k |= (c as u64) << (8 * i);
    }
    k
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
            lengths: words.iter().fold(0, |m, w| m | (1u64 << w.len().min(63))),
            max_len: words.iter().map(String::len).max().unwrap_or(0),
        }
    }

    #[inline]
    fn contains(&self, w: &[u8]) -> bool {
        if w.len() > self.max_len || (self.lengths >> w.len().min(63)) & 1 == 0 {
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
    articles: WordSet,
    conjunctions: WordSet,
    stop_words: WordSet,
    lines: bool,
    /// Finds the places where an item can start (", a", " and the", ...); a segment without one
    /// holds no list, so most of the text is never split into words.
    candidates: Regex,
}

#[inline]
fn is_delimiter(c: u8) -> bool {
    matches!(c, b'.' | b'!' | b'?' | b';' | b':' | b'\n')
}

impl EnumSorter {
    pub(super) fn new(
        articles: &[String],
        conjunctions: &[String],
        stop_words: &[String],
        lines: bool,
    ) -> Result<Self, regex::Error> {
        let alt = |ws: &[String]| {
            ws.iter()
                .map(|w| regex::escape(w))
                .collect::<Vec<_>>()
                .join("|")
        };
        let conj = if conjunctions.is_empty() {
            String::new()
        } else {
            format!("| (?:{})", alt(conjunctions))
        };
        let pattern = format!("(?:,{conj}) (?:{})(?:[ .!?;:\n]|\\z)", alt(articles));
        Ok(EnumSorter {
            articles: WordSet::new(articles),
            conjunctions: WordSet::new(conjunctions),
            stop_words: WordSet::new(stop_words),
            lines,
            candidates: Regex::new(&pattern)?,
        })
    }

    pub(super) fn apply(&self, src: &str, dst: &mut String) -> bool {
        let b = src.as_bytes();
        let n = b.len();
        let mut changed = false;
        let mut copied = 0;
        let mut search = 0;
        while search <= n {
            let Some(m) = self.candidates.find_at(src, search) else {
                break;
            };
            let at = m.start();
            let seg_start = b[..at]
                .iter()
                .rposition(|&c| is_delimiter(c))
                .map_or(0, |p| p + 1);
            let seg_end = b[at..]
                .iter()
                .position(|&c| is_delimiter(c))
                .map_or(n, |p| at + p);
            let seg = &src[seg_start..seg_end];
            if self.has_break(seg.as_bytes()) {
                dst.push_str(&src[copied..seg_start]);
                self.sort_segment(seg, dst);
                copied = seg_end;
                changed = true;
            }
            search = seg_end + 1;
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

    /// True when the segment holds a list (an item starts at one of its words).
    fn has_break(&self, seg: &[u8]) -> bool {
        let a = seg.iter().position(|&c| c != b' ').unwrap_or(seg.len());
        let z = seg.iter().rposition(|&c| c != b' ').map_or(a, |p| p + 1);
        let mut prev: Option<&[u8]> = None;
        let mut prev2 = false;
        for word in seg[a..z].split(|&c| c == b' ') {
            if let Some(p) = prev {
                if self.breaks_at(prev2, p, word) {
                    return true;
                }
                prev2 = true;
            }
            prev = Some(word);
        }
        false
    }

    /// True when an item starts at `word` (`prev2`: there is a word before `prev`).
    #[inline]
    fn breaks_at(&self, prev2: bool, prev: &[u8], word: &[u8]) -> bool {
        self.articles.contains(word)
            && (prev.last() == Some(&b',') || (prev2 && self.conjunctions.contains(prev)))
    }

    /// Append the segment (which holds a list) to `dst` with its items sorted. Words are split
    /// on single spaces, so every item, the prefix and the suffix are substrings of the segment
    /// (nothing is joined or allocated per word).
    fn sort_segment(&self, seg: &str, dst: &mut String) {
        let core_start = seg.len() - seg.trim_start_matches(' ').len();
        let core = seg[core_start..].trim_end_matches(' ');
        let trail = &seg[core_start + core.len()..];
        let mut spans: Vec<(usize, usize)> = Vec::with_capacity(32);
        let mut start = 0;
        for w in core.split(' ') {
            spans.push((start, start + w.len()));
            start += w.len() + 1;
        }
        let word = |i: usize| &core.as_bytes()[spans[i].0..spans[i].1];
        let mut bounds = vec![0];
        for i in 1..spans.len() {
            if self.breaks_at(i >= 2, word(i - 1), word(i)) {
                bounds.push(i);
            }
        }
        bounds.push(spans.len());
        let n_chunks = bounds.len() - 1;
        // Each chunk as a word range [a, b) and the byte end of its item text.
        let mut conjunction: Option<&str> = None;
        let mut chunks: Vec<(usize, usize, usize)> = Vec::with_capacity(n_chunks);
        for k in 0..n_chunks {
            let (a, mut b) = (bounds[k], bounds[k + 1]);
            let mut end = spans[b - 1].1;
            if k + 1 < n_chunks {
                if b - a >= 2 && self.conjunctions.contains(word(b - 1)) {
                    if k + 2 == n_chunks {
                        conjunction = Some(&core[spans[b - 1].0..spans[b - 1].1]);
                    }
                    b -= 1;
                    end = spans[b - 1].1;
                }
                if core.as_bytes()[spans[b - 1].0..end].last() == Some(&b',') {
                    end -= 1;
                }
            }
            chunks.push((a, b, end));
        }
        // The first item starts at the last article of the first chunk; what precedes is a prefix.
        let (a0, b0, end0) = chunks[0];
        let j = (a0..b0)
            .rev()
            .find(|&i| {
                // The chunk's last word without its separating comma.
                let end = if i + 1 == b0 { end0 } else { spans[i].1 };
                self.articles.contains(&core.as_bytes()[spans[i].0..end])
            })
            .unwrap_or(a0);
        chunks[0].0 = j;
        // The last item ends before its first stop word from the third word on.
        let (al, bl, _) = chunks[n_chunks - 1];
        let m = (al + 2..bl)
            .find(|&i| self.stop_words.contains(word(i)))
            .unwrap_or(bl);
        chunks[n_chunks - 1] = (al, m, spans[m - 1].1);
        let mut items: Vec<&str> = chunks
            .iter()
            .map(|&(a, _, end)| &core[spans[a].0..end])
            .collect();
        items.sort_unstable();
        dst.push_str(&seg[..core_start]);
        if j > 0 {
            dst.push_str(&core[..spans[j].0]);
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
        if m < bl {
            dst.push(' ');
            dst.push_str(&core[spans[m].0..]);
        }
        dst.push_str(trail);
    }

    fn starts_with_article(&self, line: &[u8]) -> bool {
        let a = line
            .iter()
            .position(|&c| c != b' ' && c != b'\t')
            .unwrap_or(line.len());
        let rest = &line[a..];
        // Only the first max_len + 1 bytes can hold the end of an article.
        let head = &rest[..rest.len().min(self.articles.max_len + 1)];
        let end = head.iter().position(|&c| c == b' ').unwrap_or(rest.len());
        self.articles.contains(&rest[..end])
    }

    /// True when two consecutive lines start with an article. Line breaks are found with
    /// `memchr`, and a line that cannot start with an article is rejected by the first word's
    /// length before any comparison.
    fn has_article_run(&self, text: &str) -> bool {
        let b = text.as_bytes();
        let mut prev = false;
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', b).chain(std::iter::once(b.len())) {
            let cur = self.starts_with_article(&b[start..end]);
            if cur && prev {
                return true;
            }
            prev = cur;
            start = end + 1;
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
