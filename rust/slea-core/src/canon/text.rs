//! The character- and line-level rules of canonicalisation. Each function writes the transformed
//! `src` into the empty `dst` and returns true, or returns false when the text is unchanged (then
//! `dst` stays empty). The loops work on bytes with an ASCII fast path and copy unchanged stretches
//! in bulk; only non-ASCII bytes decode a `char`.

use regex::Regex;
use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};

pub(super) fn nfkc(src: &str, dst: &mut String) -> bool {
    if src.is_ascii() || is_nfkc_quick(src.chars()) == IsNormalized::Yes {
        return false;
    }
    dst.extend(src.nfkc());
    true
}

/// `ascii`: the caller knows `src` is ASCII (false: not known).
pub(super) fn casefold(src: &str, dst: &mut String, ascii: bool) -> bool {
    if ascii || src.is_ascii() {
        if !src.bytes().any(|b| b.is_ascii_uppercase()) {
            return false;
        }
        dst.push_str(src);
        dst.make_ascii_lowercase();
        return true;
    }
    for c in src.chars() {
        if c.is_ascii() {
            dst.push(c.to_ascii_lowercase());
        } else {
            dst.extend(c.to_lowercase());
        }
    }
    true
}

/// The char starting at byte `i` (a char boundary) of `s`.
#[inline]
fn char_at(s: &str, i: usize) -> char {
    s[i..].chars().next().unwrap_or('\0')
}

#[inline]
fn is_ascii_space(c: u8) -> bool {
    c == b' ' || (b'\t'..=b'\r').contains(&c)
}

fn is_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r' | '\x0b' | '\x0c' | '\u{85}' | '\u{2028}' | '\u{2029}'
    )
}

/// End of the white-space run starting at `i`, and whether it holds a line break.
#[inline]
fn skip_space(s: &str, mut i: usize) -> (usize, bool) {
    let b = s.as_bytes();
    let mut brk = false;
    while i < b.len() {
        let c = b[i];
        if c < 0x80 {
            if !is_ascii_space(c) {
                break;
            }
            brk |= c != b' ' && c != b'\t';
            i += 1;
        } else {
            let ch = char_at(s, i);
            if !ch.is_whitespace() {
                break;
            }
            brk |= is_line_break(ch);
            i += ch.len_utf8();
        }
    }
    (i, brk)
}

/// End of the run of non-white-space characters starting at `i`.
#[inline]
fn skip_word(s: &str, mut i: usize) -> usize {
    let b = s.as_bytes();
    while i < b.len() {
        let c = b[i];
        if c < 0x80 {
            if is_ascii_space(c) {
                break;
            }
            i += 1;
        } else {
            let ch = char_at(s, i);
            if ch.is_whitespace() {
                break;
            }
            i += ch.len_utf8();
        }
    }
    i
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// 0x80 in each byte of `x` equal to `c`, 0 elsewhere (exact, no false positives).
#[inline]
fn bytes_eq(x: u64, c: u8) -> u64 {
    let y = x ^ (ONES * c as u64);
    !(((y & !HIGH) + !HIGH) | y | !HIGH)
}

/// True when the 8 bytes at `i` (and the byte after them) are already canonical for
/// `collapse_whitespace`: ASCII, no white space but single spaces and single newlines, and no
/// white-space run crossing into the next byte.
#[inline]
fn clean_chunk(b: &[u8], i: usize) -> bool {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[i..i + 8]);
    let x = u64::from_le_bytes(a);
    if x & HIGH != 0 {
        return false;
    }
    let nl = bytes_eq(x, b'\n');
    let below_space = !((x | HIGH) - ONES * 0x20) & HIGH;
    if below_space & !nl != 0 {
        return false;
    }
    let ws = nl | bytes_eq(x, b' ');
    if ws & (ws << 8) != 0 {
        return false;
    }
    let next = b[i + 8];
    !(ws >> 63 == 1 && (next <= b' ' || next >= 0x80))
}

pub(super) fn collapse_whitespace(src: &str, dst: &mut String) -> bool {
    let b = src.as_bytes();
    let n = b.len();
    let (start, _) = skip_space(src, 0);
    // src[copied..i] is output not yet written; it is written only once something changes.
    let mut copied = start;
    let mut changed = start > 0;
    let mut i = start;
    while i < n {
        // Fast path: skip canonical stretches 8 bytes at a time. A chunk is entered only at a
        // word start or at a run whose previous byte is not white space (see clean_chunk).
        while i + 9 <= n && clean_chunk(b, i) {
            i += 8;
        }
        i = skip_word(src, i);
        if i == n {
            break;
        }
        let (end, brk) = skip_space(src, i);
        if end == n {
            dst.push_str(&src[copied..i]);
            copied = n;
            changed = true;
            break;
        }
        let want = if brk { b'\n' } else { b' ' };
        if end - i != 1 || b[i] != want {
            dst.push_str(&src[copied..i]);
            dst.push(want as char);
            copied = end;
            changed = true;
        }
        i = end;
    }
    if changed {
        dst.push_str(&src[copied..]);
    }
    changed
}

/// True when `b` holds an ASCII digit.
fn has_ascii_digit(b: &[u8]) -> bool {
    next_ascii_digit(b, 0).is_some()
}

/// Position of the first ASCII digit of `b` at or after `from`; 32 bytes at a time without early
/// exit inside a block, so the compiler vectorises the test.
fn next_ascii_digit(b: &[u8], from: usize) -> Option<usize> {
    let tail = b.get(from..)?;
    let mut blocks = tail.chunks_exact(32);
    let mut at = from;
    for block in &mut blocks {
        if block
            .iter()
            .fold(false, |a, &c| a | (c.wrapping_sub(b'0') < 10))
        {
            return block.iter().position(u8::is_ascii_digit).map(|p| at + p);
        }
        at += 32;
    }
    blocks
        .remainder()
        .iter()
        .position(u8::is_ascii_digit)
        .map(|p| at + p)
}

pub(super) fn mask_numbers(src: &str, token: &str, dst: &mut String) -> bool {
    let b = src.as_bytes();
    if !has_ascii_digit(b) {
        return false;
    }
    let n = b.len();
    let mut copied = 0;
    let mut i = 0;
    while let Some(d) = next_ascii_digit(b, i) {
        i = d;
        dst.push_str(&src[copied..i]);
        while i < n && b[i].is_ascii_digit() {
            i += 1;
        }
        while i + 1 < n && (b[i] == b'.' || b[i] == b',') && b[i + 1].is_ascii_digit() {
            i += 1;
            while i < n && b[i].is_ascii_digit() {
                i += 1;
            }
        }
        dst.push_str(token);
        copied = i;
    }
    dst.push_str(&src[copied..]);
    true
}

#[inline]
fn is_id_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

fn is_id(word: &[u8], min_len: usize, has_digit: bool, has_alpha: bool) -> bool {
    if word.len() > 2
        && word[0] == b'0'
        && (word[1] == b'x' || word[1] == b'X')
        && word[2..].iter().all(u8::is_ascii_hexdigit)
    {
        return true;
    }
    word.len() >= min_len && has_digit && has_alpha
}

pub(super) fn mask_ids(src: &str, token: &str, min_len: usize, dst: &mut String) -> bool {
    // Both kinds of id hold a digit, so only the words around digits are looked at: from each
    // digit, out to the ends of its maximal run of id bytes (never back past the previous run).
    let b = src.as_bytes();
    let n = b.len();
    let mut copied = 0;
    let mut changed = false;
    let mut i = 0;
    while let Some(d) = next_ascii_digit(b, i) {
        let mut start = d;
        while start > i && is_id_byte(b[start - 1]) {
            start -= 1;
        }
        let mut end = d + 1;
        while end < n && is_id_byte(b[end]) {
            end += 1;
        }
        let word = &b[start..end];
        if is_id(
            word,
            min_len,
            true,
            word.iter().any(u8::is_ascii_alphabetic),
        ) {
            dst.push_str(&src[copied..start]);
            dst.push_str(token);
            copied = end;
            changed = true;
        }
        i = end;
    }
    if changed {
        dst.push_str(&src[copied..]);
    }
    changed
}

/// Start of the line holding byte `pos`.
pub(super) fn line_start(s: &str, pos: usize) -> usize {
    s.as_bytes()[..pos]
        .iter()
        .rposition(|&c| c == b'\n')
        .map_or(0, |p| p + 1)
}

/// Drop every line in which `line` matches (`line` is compiled without multi-line mode and run
/// on each line on its own). `whole` is the same pattern in multi-line mode: one search over the
/// text finds the first line that can match, and lines before a match are never tested (a line
/// that matches on its own also gives a match of `whole` that starts no later).
pub(super) fn drop_lines(src: &str, whole: &Regex, line: &Regex, dst: &mut String) -> bool {
    let n = src.len();
    let line_end = |start: usize| {
        src.as_bytes()[start..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(n, |p| start + p)
    };
    let mut changed = false;
    let mut first = true;
    // Kept lines are written in runs: src[run..] up to the line before a dropped one.
    let mut run = 0;
    let mut search = 0;
    while search <= n {
        let Some(m) = whole.find_at(src, search) else {
            break;
        };
        let last = m.end().max(m.start() + 1) - 1;
        let mut start = line_start(src, m.start());
        loop {
            let end = line_end(start);
            if line.is_match(&src[start..end]) {
                if start > run {
                    if !first {
                        dst.push('\n');
                    }
                    dst.push_str(&src[run..start - 1]);
                    first = false;
                }
                changed = true;
                run = end + 1;
            }
            search = end + 1;
            if end >= last || end == n {
                break;
            }
            start = end + 1;
        }
    }
    if changed && run <= n {
        if !first {
            dst.push('\n');
        }
        dst.push_str(&src[run..]);
    }
    changed
}

pub(super) fn keep_from_last(src: &str, re: &Regex, dst: &mut String) -> bool {
    let Some(last) = re.find_iter(src).last() else {
        return false;
    };
    let start = line_start(src, last.start());
    if start == 0 {
        return false;
    }
    dst.push_str(&src[start..]);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(f: impl Fn(&str, &mut String) -> bool, s: &str) -> String {
        let mut out = String::new();
        if f(s, &mut out) {
            out
        } else {
            assert!(out.is_empty());
            s.to_string()
        }
    }

    #[test]
    fn collapse() {
        let f = collapse_whitespace;
        assert_eq!(run(f, "  a \t b \n\n  c  "), "a b\nc");
        assert_eq!(run(f, "x\u{2028}y\u{a0}z"), "x\ny z");
        assert_eq!(run(f, " \n "), "");
        assert_eq!(run(f, "a b\nc"), "a b\nc");
        assert_eq!(run(f, "a\r\nb\t c"), "a\nb c");
        assert_eq!(run(f, ""), "");
    }

    /// The definition of collapse_whitespace, as a plain loop.
    fn plain_collapse(s: &str) -> String {
        let mut out = String::new();
        let mut run = String::new();
        for ch in s.chars() {
            if ch.is_whitespace() {
                run.push(ch);
                continue;
            }
            if !run.is_empty() && !out.is_empty() {
                out.push(if run.chars().any(is_line_break) {
                    '\n'
                } else {
                    ' '
                });
            }
            run.clear();
            out.push(ch);
        }
        out
    }

    #[test]
    fn collapse_matches_a_plain_loop_on_short_texts() {
        let alphabet = ['a', ' ', '\n', '\t', '\u{a0}'];
        let mut stack = vec![String::new()];
        while let Some(s) = stack.pop() {
            assert_eq!(run(collapse_whitespace, &s), plain_collapse(&s), "{s:?}");
            if s.chars().count() < 6 {
                for c in alphabet {
                    let mut t = s.clone();
                    t.push(c);
                    stack.push(t);
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn collapse_matches_a_plain_loop(s in "[ab \n\t\r\u{a0}\u{2028}é]{0,60}") {
            proptest::prop_assert_eq!(run(collapse_whitespace, &s), plain_collapse(&s));
        }

        #[test]
        fn collapse_fast_path(words in proptest::collection::vec("[a-z]{1,9}", 0..30),
                              seps in proptest::collection::vec("( |\n| \n|  |\n\n|\t)", 30)) {
            let s: String = words.iter().zip(&seps).map(|(w, sep)| format!("{w}{sep}")).collect();
            proptest::prop_assert_eq!(run(collapse_whitespace, &s), plain_collapse(&s));
        }
    }

    #[test]
    fn digits() {
        for n in [0, 1, 31, 32, 33, 64, 100] {
            let mut v = vec![b'a'; n];
            assert!(!has_ascii_digit(&v));
            for i in 0..n {
                v[i] = b'7';
                assert!(has_ascii_digit(&v));
                for from in 0..=n + 1 {
                    let want = (from <= i).then_some(i);
                    assert_eq!(next_ascii_digit(&v, from), want, "n={n} i={i} from={from}");
                }
                v[i] = b'a';
            }
        }
        assert!(!has_ascii_digit(b"/:"));
    }

    #[test]
    fn drop() {
        let (p, q) = (r"(?:^score)|(?:^\s*$)", r"^q");
        let w = |p: &str| {
            regex::RegexBuilder::new(p)
                .multi_line(true)
                .build()
                .unwrap()
        };
        let (wp, lp) = (w(p), Regex::new(p).unwrap());
        let f = |s: &str, d: &mut String| drop_lines(s, &wp, &lp, d);
        assert_eq!(run(f, "a\nscore 1\nb\n\nscore 2"), "a\nb");
        assert_eq!(run(f, "x\nscore\n"), "x");
        assert_eq!(run(f, "score"), "");
        assert_eq!(run(f, "score\nx"), "x");
        assert_eq!(run(f, "a\nb"), "a\nb");
        let (wq, lq) = (w(q), Regex::new(q).unwrap());
        let f = |s: &str, d: &mut String| drop_lines(s, &wq, &lq, d);
        assert_eq!(run(f, "x\nq\n"), "x\n");
        assert_eq!(run(f, "q\n\nq"), "");
    }
}
