//! Observation canonicalisation: an ordered list of serialisable rules turns an observation into
//! its canonical text, so that observations of the same state become the same string.
//!
//! A [`CanonSpec`] is a list of [`Rule`]s applied in order; it serialises to JSON
//! (`{"version": 1, "rules": [{"rule": "nfkc"}, ...]}`) and has a stable 64-bit fingerprint (xxh3 of
//! the algorithm version and the rules' JSON), so a clusterer snapshot can refuse another spec.
//! Regexes are compiled once, when the spec is built.
//!
//! The rules:
//! - `nfkc`: Unicode NFKC normalisation (ASCII and already-normal text pass untouched).
//! - `casefold`: each character replaced by its Unicode lowercase mapping, character by character.
//! - `collapse_whitespace`: every run of Unicode white space becomes one `"\n"` when it contains a
//!   line break (`\n \r \x0b \x0c \u{85} \u{2028} \u{2029}`) and one space otherwise; white space at
//!   both ends is removed (so lines are trimmed and blank lines vanish).
//! - `mask_numbers {token}`: every `[0-9]+([.,][0-9]+)*` becomes `token`.
//! - `mask_ids {token, min_len}`: every maximal run of `[A-Za-z0-9_-]` that is `0x` + hex digits,
//!   or has at least `min_len` characters with both an ASCII digit and an ASCII letter, becomes
//!   `token`.
//! - `drop_lines {patterns}`: lines (split on `\n`) in which any pattern matches are removed.
//! - `keep_from_last {pattern}`: the text before the line holding the last match is removed
//!   (nothing happens without a match). With `^-= .+ =-$` it keeps a TextWorld observation from its
//!   last room header on, which drops the feedback and banners printed before it.
//! - `replace {pattern, replacement}`: regex replacement (`$1`, `${name}` expand groups).
//! - `sort_enumerations {articles, conjunctions, stop_words, lines}`: makes the order of listed
//!   items irrelevant. In each segment (text between `. ! ? ; :` and newlines) an item starts at an
//!   article that follows a word ending in a comma, or a conjunction that itself follows a word
//!   ("you see a x, a y, and a z"). The first item starts at the last article of the text before
//!   the first break (what precedes is a prefix); the last item ends before its first stop word
//!   from the third word on ("a blanket on the floor": the suffix is "on the floor"). The items are
//!   sorted and written back as "prefix a x, a y and a z suffix". With `lines`, runs of two or more
//!   consecutive lines whose first word is an article are sorted too.
//!
//! Patterns use the `regex` crate's syntax. `drop_lines` patterns are matched against each line on
//! its own (`^` and `$` anchor at the line's ends); `keep_from_last` and `replace` run on the whole
//! text in multi-line mode.

use std::mem;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};
use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};

use crate::error::{Error, Result};

/// Version of the canonicalisation algorithm; part of every fingerprint, so that a change in what
/// a rule does changes the fingerprints (and snapshots made before refuse to load).
pub const CANON_VERSION: u32 = 1;

/// Compiled-regex size limit per pattern (bytes), far above any sensible pattern.
const REGEX_SIZE_LIMIT: usize = 1 << 22;

/// One canonicalisation rule (see the module docs for what each does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case", deny_unknown_fields)]
pub enum Rule {
    Nfkc,
    Casefold,
    CollapseWhitespace,
    MaskNumbers {
        #[serde(default = "default_number_token")]
        token: String,
    },
    MaskIds {
        #[serde(default = "default_id_token")]
        token: String,
        #[serde(default = "default_min_len")]
        min_len: usize,
    },
    DropLines {
        patterns: Vec<String>,
    },
    KeepFromLast {
        pattern: String,
    },
    Replace {
        pattern: String,
        replacement: String,
    },
    SortEnumerations {
        #[serde(default = "default_articles")]
        articles: Vec<String>,
        #[serde(default = "default_conjunctions")]
        conjunctions: Vec<String>,
        #[serde(default = "default_stop_words")]
        stop_words: Vec<String>,
        #[serde(default)]
        lines: bool,
    },
}

fn default_number_token() -> String {
    "#".into()
}
fn default_id_token() -> String {
    "<id>".into()
}
fn default_min_len() -> usize {
    6
}
fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}
fn default_articles() -> Vec<String> {
    strings(&["a", "an", "the", "some"])
}
fn default_conjunctions() -> Vec<String> {
    strings(&["and", "or"])
}
fn default_stop_words() -> Vec<String> {
    strings(&[
        "on", "in", "at", "here", "there", "inside", "into", "onto", "under", "from", "to",
        "lying", "that", "which", "is", "are", "with",
    ])
}

/// Lines that are counters or scores ("Moves: 12  Score: 3", "step 4/50", "reward = 0.5").
const STATUS_LINE: &str =
    r"(?i)^\W*(?:moves?|score|steps?|turns?|time|reward|points?)\b\W*[-+]?[0-9]";

fn status_lines() -> Rule {
    Rule::DropLines {
        patterns: vec![STATUS_LINE.into()],
    }
}
fn sort_rule(lines: bool) -> Rule {
    Rule::SortEnumerations {
        articles: default_articles(),
        conjunctions: default_conjunctions(),
        stop_words: default_stop_words(),
        lines,
    }
}

/// The rule lists of the presets. `generic`: everything that is safe for any text environment.
/// `textworld`: keeps the observation from its last room header on (drops feedback, banners and
/// the intro), no number masking (entity names such as "type 1 passageway" carry numbers).
/// `alfworld`: keeps instance numbers ("cabinet 3" is a different receptacle than "cabinet 4") but
/// masks location ids ("loc 12"). `scienceworld`: masks numbers (temperatures, counts) and sorts
/// the one-item-per-line listings.
pub fn preset_rules(name: &str) -> Option<Vec<Rule>> {
    let head = [Rule::Nfkc, Rule::Casefold];
    let rules = match name {
        "generic" => vec![
            status_lines(),
            Rule::CollapseWhitespace,
            Rule::MaskIds {
                token: default_id_token(),
                min_len: default_min_len(),
            },
            Rule::MaskNumbers {
                token: default_number_token(),
            },
            sort_rule(true),
        ],
        "textworld" => vec![
            Rule::KeepFromLast {
                pattern: r"^-= .+ =-$".into(),
            },
            Rule::DropLines {
                patterns: vec![
                    STATUS_LINE.into(),
                    r"^\s*>".into(),
                    r"^\s*your score has just gone (?:up|down)".into(),
                ],
            },
            Rule::CollapseWhitespace,
            sort_rule(false),
        ],
        "alfworld" => vec![
            Rule::DropLines {
                patterns: vec![STATUS_LINE.into(), r"^\s*-= welcome to textworld".into()],
            },
            Rule::Replace {
                pattern: r"\bloc [0-9]+\b".into(),
                replacement: "loc #".into(),
            },
            Rule::CollapseWhitespace,
            sort_rule(false),
        ],
        "scienceworld" => vec![
            status_lines(),
            Rule::CollapseWhitespace,
            Rule::MaskNumbers {
                token: default_number_token(),
            },
            sort_rule(true),
        ],
        _ => return None,
    };
    Some(head.into_iter().chain(rules).collect())
}

/// Names accepted by [`CanonSpec::preset`].
pub const PRESETS: [&str; 4] = ["generic", "textworld", "alfworld", "scienceworld"];

/// An ordered list of rules with its compiled form and fingerprint. Immutable once built.
#[derive(Debug, Clone)]
pub struct CanonSpec {
    rules: Vec<Rule>,
    steps: Vec<Step>,
    fingerprint: u64,
    json: String,
}

impl PartialEq for CanonSpec {
    fn eq(&self, other: &Self) -> bool {
        self.rules == other.rules
    }
}

impl Eq for CanonSpec {}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecJson<T> {
    version: u32,
    rules: T,
}

/// Reusable buffers for [`CanonSpec::canonicalize_into`] (one per thread or per clusterer).
#[derive(Debug, Default, Clone)]
pub struct Scratch {
    cur: String,
    next: String,
}

impl CanonSpec {
    /// Build a spec from rules; every pattern is compiled here. Errors name the rule (`rules[i]`).
    pub fn new(rules: Vec<Rule>) -> Result<Self> {
        let steps = rules
            .iter()
            .enumerate()
            .map(|(i, r)| Step::compile(r, i))
            .collect::<Result<Vec<_>>>()?;
        let json = serde_json::to_string(&SpecJson {
            version: CANON_VERSION,
            rules: &rules,
        })
        .map_err(|e| Error::invalid("rules", e))?;
        let fingerprint = xxhash_rust::xxh3::xxh3_64(json.as_bytes());
        Ok(CanonSpec {
            rules,
            steps,
            fingerprint,
            json,
        })
    }

    /// One of the named presets ([`PRESETS`]).
    pub fn preset(name: &str) -> Result<Self> {
        let rules = preset_rules(name).ok_or_else(|| {
            Error::invalid(
                "name",
                format!("unknown preset {name:?}; choose one of {PRESETS:?}"),
            )
        })?;
        CanonSpec::new(rules)
    }

    /// Parse the JSON written by [`CanonSpec::to_json`]. Errors name the offending rule.
    pub fn from_json(text: &str) -> Result<Self> {
        let raw: SpecJson<serde_json::Value> =
            serde_json::from_str(text).map_err(|e| Error::invalid("json", e))?;
        if raw.version != CANON_VERSION {
            return Err(Error::invalid(
                "json",
                format!(
                    "canon spec version {} is not supported (this build reads version {CANON_VERSION})",
                    raw.version
                ),
            ));
        }
        Self::from_rule_values(raw.rules)
    }

    /// Parse a JSON list of rules (`[{"rule": "nfkc"}, ...]`). Errors name the offending rule.
    pub fn from_rules_json(text: &str) -> Result<Self> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Error::invalid("rules", e))?;
        Self::from_rule_values(value)
    }

    fn from_rule_values(value: serde_json::Value) -> Result<Self> {
        let serde_json::Value::Array(values) = value else {
            return Err(Error::invalid("rules", "must be a list of rule objects"));
        };
        let rules = values
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                serde_json::from_value::<Rule>(v)
                    .map_err(|e| Error::invalid(format!("rules[{i}]"), e))
            })
            .collect::<Result<Vec<_>>>()?;
        CanonSpec::new(rules)
    }

    /// The JSON form: `{"version": 1, "rules": [...]}`, fields in a fixed order.
    pub fn to_json(&self) -> &str {
        &self.json
    }

    /// Stable 64-bit fingerprint: xxh3-64 of [`CanonSpec::to_json`]. Same rules, same value, in
    /// every process and on every platform.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The canonical text of `text`.
    pub fn canonicalize(&self, text: &str) -> String {
        let mut scratch = Scratch::default();
        self.canonicalize_into(text, &mut scratch).to_owned()
    }

    /// The canonical text of `text`, borrowing `scratch`'s buffers (no allocation once warm).
    pub fn canonicalize_into<'a>(&self, text: &'a str, scratch: &'a mut Scratch) -> &'a str {
        let Scratch { cur, next } = scratch;
        let mut owned = false;
        for step in &self.steps {
            next.clear();
            let src: &str = if owned { cur } else { text };
            if step.apply(src, next) {
                mem::swap(cur, next);
                owned = true;
            }
        }
        if owned {
            cur
        } else {
            text
        }
    }

    /// Structural hash of `text`: xxh3-64 of its canonical text.
    pub fn structural_hash(&self, text: &str, scratch: &mut Scratch) -> u64 {
        crate::hash::structural_hash(self.canonicalize_into(text, scratch))
    }

    /// SimHash-64 of `text`'s canonical text (see [`crate::hash::simhash`]).
    pub fn simhash(&self, text: &str, scratch: &mut Scratch) -> u64 {
        crate::hash::simhash(self.canonicalize_into(text, scratch))
    }

    /// [`CanonSpec::canonicalize`] of each text.
    pub fn canonicalize_batch(&self, texts: &[&str]) -> Vec<String> {
        let mut scratch = Scratch::default();
        texts
            .iter()
            .map(|t| self.canonicalize_into(t, &mut scratch).to_owned())
            .collect()
    }

    /// [`CanonSpec::structural_hash`] of each text.
    pub fn structural_hash_batch(&self, texts: &[&str]) -> Vec<u64> {
        let mut scratch = Scratch::default();
        texts
            .iter()
            .map(|t| self.structural_hash(t, &mut scratch))
            .collect()
    }

    /// [`CanonSpec::simhash`] of each text.
    pub fn simhash_batch(&self, texts: &[&str]) -> Vec<u64> {
        let mut scratch = Scratch::default();
        texts
            .iter()
            .map(|t| self.simhash(t, &mut scratch))
            .collect()
    }
}

/// A compiled rule.
#[derive(Debug, Clone)]
enum Step {
    Nfkc,
    Casefold,
    CollapseWhitespace,
    MaskNumbers(String),
    MaskIds { token: String, min_len: usize },
    DropLines(Regex),
    KeepFromLast(Regex),
    Replace(Regex, String),
    SortEnumerations(Box<EnumSorter>),
}

fn compile(pattern: &str, arg: &str) -> Result<Regex> {
    RegexBuilder::new(pattern)
        .multi_line(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| Error::invalid(arg, format!("is not a valid regex: {e}")))
}

fn check_words(words: &[String], arg: &str) -> Result<()> {
    for (j, w) in words.iter().enumerate() {
        if w.is_empty() || w.contains(char::is_whitespace) {
            return Err(Error::invalid(
                format!("{arg}[{j}]"),
                "must be one word (non-empty, no white space)",
            ));
        }
    }
    Ok(())
}

impl Step {
    fn compile(rule: &Rule, i: usize) -> Result<Step> {
        let at = |field: &str| format!("rules[{i}].{field}");
        Ok(match rule {
            Rule::Nfkc => Step::Nfkc,
            Rule::Casefold => Step::Casefold,
            Rule::CollapseWhitespace => Step::CollapseWhitespace,
            Rule::MaskNumbers { token } => Step::MaskNumbers(token.clone()),
            Rule::MaskIds { token, min_len } => {
                if *min_len == 0 {
                    return Err(Error::invalid(at("min_len"), "must be at least 1"));
                }
                Step::MaskIds {
                    token: token.clone(),
                    min_len: *min_len,
                }
            }
            Rule::DropLines { patterns } => {
                if patterns.is_empty() {
                    return Err(Error::invalid(at("patterns"), "must not be empty"));
                }
                for (j, p) in patterns.iter().enumerate() {
                    compile(p, &format!("{}[{j}]", at("patterns")))?;
                }
                let joined = patterns
                    .iter()
                    .map(|p| format!("(?:{p})"))
                    .collect::<Vec<_>>()
                    .join("|");
                Step::DropLines(compile(&joined, &at("patterns"))?)
            }
            Rule::KeepFromLast { pattern } => Step::KeepFromLast(compile(pattern, &at("pattern"))?),
            Rule::Replace {
                pattern,
                replacement,
            } => Step::Replace(compile(pattern, &at("pattern"))?, replacement.clone()),
            Rule::SortEnumerations {
                articles,
                conjunctions,
                stop_words,
                lines,
            } => {
                check_words(articles, &at("articles"))?;
                check_words(conjunctions, &at("conjunctions"))?;
                check_words(stop_words, &at("stop_words"))?;
                if articles.is_empty() {
                    return Err(Error::invalid(at("articles"), "must not be empty"));
                }
                Step::SortEnumerations(Box::new(EnumSorter {
                    articles: WordSet::new(articles),
                    conjunctions: WordSet::new(conjunctions),
                    stop_words: WordSet::new(stop_words),
                    lines: *lines,
                }))
            }
        })
    }

    /// Write the transformed `src` into `dst` (empty) and return true, or return false when the
    /// text is unchanged (then `dst` is left empty and `src` is the result).
    fn apply(&self, src: &str, dst: &mut String) -> bool {
        match self {
            Step::Nfkc => nfkc(src, dst),
            Step::Casefold => casefold(src, dst),
            Step::CollapseWhitespace => collapse_whitespace(src, dst),
            Step::MaskNumbers(token) => mask_numbers(src, token, dst),
            Step::MaskIds { token, min_len } => mask_ids(src, token, *min_len, dst),
            Step::DropLines(re) => drop_lines(src, re, dst),
            Step::KeepFromLast(re) => keep_from_last(src, re, dst),
            Step::Replace(re, replacement) => match re.replace_all(src, replacement.as_str()) {
                std::borrow::Cow::Borrowed(_) => false,
                std::borrow::Cow::Owned(s) => {
                    dst.push_str(&s);
                    true
                }
            },
            Step::SortEnumerations(sorter) => sorter.apply(src, dst),
        }
    }
}

fn nfkc(src: &str, dst: &mut String) -> bool {
    if src.is_ascii() || is_nfkc_quick(src.chars()) == IsNormalized::Yes {
        return false;
    }
    dst.extend(src.nfkc());
    true
}

fn casefold(src: &str, dst: &mut String) -> bool {
    if src.is_ascii() {
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

fn is_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r' | '\x0b' | '\x0c' | '\u{85}' | '\u{2028}' | '\u{2029}'
    )
}

fn collapse_whitespace(src: &str, dst: &mut String) -> bool {
    let b = src.as_bytes();
    let n = b.len();
    // 0: no white space pending, 1: a space, 2: a line break.
    let mut pending = 0u8;
    let mut i = 0;
    while i < n {
        let start = i;
        while i < n {
            let c = b[i];
            if c < 0x80 {
                if c == b' ' || (b'\t'..=b'\r').contains(&c) {
                    break;
                }
                i += 1;
            } else {
                let ch = next_char(src, i);
                if ch.is_whitespace() {
                    break;
                }
                i += ch.len_utf8();
            }
        }
        if i > start {
            if !dst.is_empty() {
                match pending {
                    1 => dst.push(' '),
                    2 => dst.push('\n'),
                    _ => {}
                }
            }
            dst.push_str(&src[start..i]);
            pending = 0;
        }
        while i < n {
            let c = b[i];
            let ch = if c < 0x80 {
                c as char
            } else {
                next_char(src, i)
            };
            if !ch.is_whitespace() {
                break;
            }
            pending = pending.max(if is_line_break(ch) { 2 } else { 1 });
            i += ch.len_utf8();
        }
    }
    true
}

/// The char starting at byte `i` (a char boundary) of `s`.
fn next_char(s: &str, i: usize) -> char {
    s[i..].chars().next().unwrap_or('\0')
}

fn mask_numbers(src: &str, token: &str, dst: &mut String) -> bool {
    let b = src.as_bytes();
    if !b.iter().any(u8::is_ascii_digit) {
        return false;
    }
    let n = b.len();
    let mut copied = 0;
    let mut i = 0;
    while i < n {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
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

fn is_id_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

fn is_id(word: &[u8], min_len: usize) -> bool {
    if word.len() > 2
        && word[0] == b'0'
        && (word[1] == b'x' || word[1] == b'X')
        && word[2..].iter().all(u8::is_ascii_hexdigit)
    {
        return true;
    }
    word.len() >= min_len
        && word.iter().any(u8::is_ascii_digit)
        && word.iter().any(u8::is_ascii_alphabetic)
}

fn mask_ids(src: &str, token: &str, min_len: usize, dst: &mut String) -> bool {
    let b = src.as_bytes();
    if !b.iter().any(u8::is_ascii_digit) {
        return false;
    }
    let n = b.len();
    let mut copied = 0;
    let mut changed = false;
    let mut i = 0;
    while i < n {
        if !is_id_byte(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < n && is_id_byte(b[i]) {
            i += 1;
        }
        if is_id(&b[start..i], min_len) {
            dst.push_str(&src[copied..start]);
            dst.push_str(token);
            copied = i;
            changed = true;
        }
    }
    if changed {
        dst.push_str(&src[copied..]);
    }
    changed
}

/// Start of the line holding byte `pos`.
fn line_start(s: &str, pos: usize) -> usize {
    s.as_bytes()[..pos]
        .iter()
        .rposition(|&c| c == b'\n')
        .map_or(0, |p| p + 1)
}

/// End (index of the `\n`, or the length) of the line starting at `start`.
fn line_end(s: &str, start: usize) -> usize {
    s.as_bytes()[start..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(s.len(), |p| start + p)
}

fn drop_lines(src: &str, re: &Regex, dst: &mut String) -> bool {
    // One search over the whole text finds the candidate lines; each line touched by a match is
    // then tested on its own, which is the definition (a pattern matched against each line).
    let mut dropped: Vec<(usize, usize)> = Vec::new();
    let mut pos = 0;
    while pos <= src.len() {
        let Some(m) = re.find_at(src, pos) else {
            break;
        };
        let mut ls = line_start(src, m.start());
        let last = if m.end() > m.start() {
            m.end() - 1
        } else {
            m.start()
        };
        loop {
            let le = line_end(src, ls);
            if dropped.last().map_or(true, |&(s, _)| s < ls) && re.is_match(&src[ls..le]) {
                dropped.push((ls, le));
            }
            pos = le + 1;
            if le >= last || le >= src.len() {
                break;
            }
            ls = le + 1;
        }
    }
    if dropped.is_empty() {
        return false;
    }
    let mut first = true;
    let mut emit = |dst: &mut String, s: &str| {
        if !first {
            dst.push('\n');
        }
        dst.push_str(s);
        first = false;
    };
    let mut cursor = 0;
    let mut more = true;
    for (ls, le) in dropped {
        if ls > cursor {
            emit(dst, &src[cursor..ls - 1]);
        }
        if le < src.len() {
            cursor = le + 1;
        } else {
            more = false;
            break;
        }
    }
    if more {
        emit(dst, &src[cursor..]);
    }
    true
}

fn keep_from_last(src: &str, re: &Regex, dst: &mut String) -> bool {
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

/// A small set of words, tested by length first.
#[derive(Debug, Clone)]
struct WordSet {
    words: Vec<String>,
    max_len: usize,
}

impl WordSet {
    fn new(words: &[String]) -> Self {
        WordSet {
            max_len: words.iter().map(String::len).max().unwrap_or(0),
            words: words.to_vec(),
        }
    }
    #[inline]
    fn contains(&self, w: &str) -> bool {
        w.len() <= self.max_len && self.words.iter().any(|x| x == w)
    }
}

#[derive(Debug, Clone)]
struct EnumSorter {
    articles: WordSet,
    conjunctions: WordSet,
    stop_words: WordSet,
    lines: bool,
}

fn is_delimiter(c: u8) -> bool {
    matches!(c, b'.' | b'!' | b'?' | b';' | b':' | b'\n')
}

impl EnumSorter {
    fn apply(&self, src: &str, dst: &mut String) -> bool {
        let b = src.as_bytes();
        let mut changed = false;
        let mut seg_start = 0;
        for i in 0..=b.len() {
            if i < b.len() && !is_delimiter(b[i]) {
                continue;
            }
            let seg = &src[seg_start..i];
            changed |= self.sort_segment(seg, dst);
            if i < b.len() {
                dst.push(b[i] as char);
            }
            seg_start = i + 1;
        }
        if self.lines {
            if let Some(sorted) = self.sort_lines(dst) {
                *dst = sorted;
                changed = true;
            }
        }
        if !changed {
            dst.clear();
        }
        changed
    }

    /// True when an item starts at word `i` (given the words before it).
    fn breaks_at(&self, prev2: Option<&str>, prev: &str, word: &str) -> bool {
        self.articles.contains(word)
            && (prev.ends_with(',') || (prev2.is_some() && self.conjunctions.contains(prev)))
    }

    /// Append the segment to `dst`, its items sorted; true when it held a list.
    fn sort_segment(&self, seg: &str, dst: &mut String) -> bool {
        let core = seg.trim_matches(' ');
        let has_break = {
            let mut words = core.split(' ');
            let mut prev2: Option<&str> = None;
            let mut prev = words.next().unwrap_or("");
            let mut found = false;
            for w in words {
                if self.breaks_at(prev2, prev, w) {
                    found = true;
                    break;
                }
                prev2 = Some(prev);
                prev = w;
            }
            found
        };
        if core.is_empty() || !has_break {
            dst.push_str(seg);
            return false;
        }
        let lead = &seg[..seg.len() - seg.trim_start_matches(' ').len()];
        let trail = &seg[seg.trim_end_matches(' ').len()..];
        let words: Vec<&str> = core.split(' ').collect();
        let mut bounds = vec![0];
        for i in 1..words.len() {
            let prev2 = if i >= 2 { Some(words[i - 2]) } else { None };
            if self.breaks_at(prev2, words[i - 1], words[i]) {
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
                if chunk.len() >= 2 && chunk.last().is_some_and(|w| self.conjunctions.contains(w)) {
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
            .rposition(|w| self.articles.contains(w))
            .unwrap_or(0);
        let prefix = &first[..j];
        chunks[0] = first[j..].to_vec();
        let last = mem::take(&mut chunks[n_chunks - 1]);
        let m = (2..last.len())
            .find(|&i| self.stop_words.contains(last[i]))
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
        true
    }

    fn starts_with_article(&self, line: &str) -> bool {
        let first = line
            .trim_start_matches([' ', '\t'])
            .split(' ')
            .next()
            .unwrap_or("");
        self.articles.contains(first)
    }

    /// The text with runs of two or more article lines sorted, or None when there is no such run.
    fn sort_lines(&self, text: &str) -> Option<String> {
        let lines: Vec<&str> = text.split('\n').collect();
        let mut flags: Vec<bool> = lines.iter().map(|l| self.starts_with_article(l)).collect();
        let has_run = flags.windows(2).any(|w| w[0] && w[1]);
        if !has_run {
            return None;
        }
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
        Some(out.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rules: Vec<Rule>) -> CanonSpec {
        CanonSpec::new(rules).unwrap()
    }

    fn sort() -> Rule {
        sort_rule(true)
    }

    #[test]
    fn collapse_whitespace_trims_and_keeps_line_breaks() {
        let s = spec(vec![Rule::CollapseWhitespace]);
        assert_eq!(s.canonicalize("  a \t b \n\n  c  "), "a b\nc");
        assert_eq!(s.canonicalize("x\u{2028}y\u{a0}z"), "x\ny z");
        assert_eq!(s.canonicalize(" \n "), "");
    }

    #[test]
    fn masks() {
        let s = spec(vec![
            Rule::MaskIds {
                token: "<id>".into(),
                min_len: 6,
            },
            Rule::MaskNumbers { token: "#".into() },
        ]);
        assert_eq!(
            s.canonicalize("step 12 of 1,000.5 at 0x1f obj a3f9c2e1 room"),
            "step # of # at <id> obj <id> room"
        );
        assert_eq!(s.canonicalize("no digits"), "no digits");
    }

    #[test]
    fn drop_lines_matches_each_line() {
        let s = spec(vec![Rule::DropLines {
            patterns: vec![r"^score".into(), r"^\s*$".into()],
        }]);
        assert_eq!(s.canonicalize("a\nscore 1\nb\n\nscore 2"), "a\nb");
        assert_eq!(s.canonicalize("x\na\n"), "x\na");
        assert_eq!(s.canonicalize("score"), "");
    }

    #[test]
    fn keep_from_last_header() {
        let s = CanonSpec::preset("textworld").unwrap();
        let obs = "Moves: 3\nYou go east.\n\n-= Hall =-\nold\n\n-= Kitchen =-\nA kitchen.\n\nYou are carrying nothing.";
        assert_eq!(
            s.canonicalize(obs),
            "-= kitchen =-\na kitchen.\nyou are carrying nothing."
        );
    }

    #[test]
    fn enumerations_are_order_free() {
        let s = spec(vec![sort()]);
        let a = s.canonicalize("on the counter you see a red apple, a knife, and a cookbook.");
        let b = s.canonicalize("on the counter you see a cookbook, a red apple and a knife.");
        assert_eq!(a, b);
        assert_eq!(
            a,
            "on the counter you see a cookbook, a knife and a red apple."
        );
        let c = s.canonicalize("there is a controller and a blanket on the floor.");
        let d = s.canonicalize("there is a blanket and a controller on the floor.");
        assert_eq!(c, d);
        assert_eq!(c, "there is a blanket and a controller on the floor.");
        let e = s.canonicalize("in it, you see:\nthe agent\na chair\nan orange\nyou also see:");
        assert_eq!(
            e,
            "in it, you see:\na chair\nan orange\nthe agent\nyou also see:"
        );
        let f = "why not try going west, that entranceway is open.";
        assert_eq!(s.canonicalize(f), f);
    }

    #[test]
    fn json_roundtrip_and_fingerprint() {
        for name in PRESETS {
            let s = CanonSpec::preset(name).unwrap();
            let back = CanonSpec::from_json(s.to_json()).unwrap();
            assert_eq!(s, back);
            assert_eq!(s.fingerprint(), back.fingerprint());
        }
        let g = CanonSpec::preset("generic").unwrap();
        let t = CanonSpec::preset("textworld").unwrap();
        assert_ne!(g.fingerprint(), t.fingerprint());
    }

    #[test]
    fn bad_specs_name_the_rule() {
        let e = CanonSpec::from_json(r#"{"version":1,"rules":[{"rule":"nfkc"},{"rule":"bogus"}]}"#)
            .unwrap_err();
        assert!(e.to_string().starts_with("rules[1]"), "{e}");
        let e = CanonSpec::new(vec![Rule::KeepFromLast {
            pattern: "(".into(),
        }])
        .unwrap_err();
        assert!(e.to_string().starts_with("rules[0].pattern"), "{e}");
        let e = CanonSpec::from_json(r#"{"version":99,"rules":[]}"#).unwrap_err();
        assert!(e.to_string().contains("version 99"), "{e}");
        assert!(CanonSpec::preset("nope").is_err());
    }

    #[test]
    fn unicode_input_is_safe() {
        let s = CanonSpec::preset("generic").unwrap();
        let t = "Ｔｈｅ ＫＥＹ, a ΣΑΣ and a İ\u{0301}x 123 \u{2028}";
        let once = s.canonicalize(t);
        assert!(once.contains("the key"));
        assert_eq!(once, s.canonicalize(t));
    }
}
