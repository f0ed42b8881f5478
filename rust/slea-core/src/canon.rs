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

mod enumerations;
mod text;

use std::mem;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use enumerations::EnumSorter;
use text::{
    casefold, collapse_whitespace, drop_lines, keep_from_last, mask_ids, mask_numbers, nfkc,
};

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

/// Lines that are counters or scores, after case folding and white-space collapse ("moves: 12
/// score: 3", "step 4/50", "[turn 7]", "reward = 0.5"). Each pattern starts with literals, so the
/// regex engine can skip to candidate positions (a leading `\W*` would make it test every byte).
const STATUS_LINE: [&str; 2] = [
    r"^(?:moves?|score|steps?|turns?|time|reward|points?)\b\W*[-+]?[0-9]",
    r"^\[(?:moves?|score|steps?|turns?|time|reward|points?)\b\W*[-+]?[0-9]",
];

fn status_patterns() -> Vec<String> {
    STATUS_LINE.iter().map(|p| p.to_string()).collect()
}

fn status_lines() -> Rule {
    Rule::DropLines {
        patterns: status_patterns(),
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
            Rule::CollapseWhitespace,
            status_lines(),
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
            Rule::CollapseWhitespace,
            Rule::DropLines {
                patterns: [
                    &STATUS_LINE[..],
                    &[r"^your score has just gone (?:up|down)"],
                ]
                .concat()
                .into_iter()
                .map(String::from)
                .collect(),
            },
            sort_rule(false),
        ],
        "alfworld" => vec![
            Rule::CollapseWhitespace,
            Rule::DropLines {
                patterns: [&STATUS_LINE[..], &[r"^-= welcome to textworld"]]
                    .concat()
                    .into_iter()
                    .map(String::from)
                    .collect(),
            },
            Rule::Replace {
                pattern: r"\bloc [0-9]+\b".into(),
                replacement: "loc #".into(),
            },
            sort_rule(false),
        ],
        "scienceworld" => vec![
            Rule::CollapseWhitespace,
            status_lines(),
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
            .map(|(i, v)| parse_rule(v).map_err(|e| Error::invalid(format!("rules[{i}]"), e)))
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
        // True only when the current text is known to be ASCII (false: not known), so that
        // the rules with an ASCII fast path do not test it again.
        let mut ascii = text.is_ascii();
        for step in &self.steps {
            next.clear();
            let src: &str = if owned { cur } else { text };
            if step.apply(src, next, ascii) {
                ascii = step.keeps_ascii(ascii) || next.is_ascii();
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

/// One rule from its JSON object; unknown fields are refused (serde ignores them on unit
/// variants of an internally tagged enum, so they are checked against the rule's own fields).
fn parse_rule(value: serde_json::Value) -> std::result::Result<Rule, String> {
    let keys: Vec<String> = match &value {
        serde_json::Value::Object(m) => m.keys().cloned().collect(),
        _ => return Err("must be an object such as {\"rule\": \"nfkc\"}".into()),
    };
    let rule: Rule = serde_json::from_value(value).map_err(|e| e.to_string())?;
    if let Ok(serde_json::Value::Object(known)) = serde_json::to_value(&rule) {
        if let Some(k) = keys.iter().find(|k| !known.contains_key(k.as_str())) {
            return Err(format!("unknown field `{k}`"));
        }
    }
    Ok(rule)
}

/// A compiled rule.
#[derive(Debug, Clone)]
enum Step {
    Nfkc,
    Casefold,
    CollapseWhitespace,
    MaskNumbers(String),
    MaskIds { token: String, min_len: usize },
    DropLines { whole: Regex, line: Regex },
    KeepFromLast(Regex),
    Replace(Regex, String),
    SortEnumerations(Box<EnumSorter>),
}

fn compile(pattern: &str, arg: &str) -> Result<Regex> {
    compile_with(pattern, arg, true)
}

fn compile_with(pattern: &str, arg: &str, multi_line: bool) -> Result<Regex> {
    RegexBuilder::new(pattern)
        .multi_line(multi_line)
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
                Step::DropLines {
                    whole: compile_with(&joined, &at("patterns"), true)?,
                    line: compile_with(&joined, &at("patterns"), false)?,
                }
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
                let sorter = EnumSorter::new(articles, conjunctions, stop_words, *lines)
                    .map_err(|e| Error::invalid(at("articles"), e))?;
                Step::SortEnumerations(Box::new(sorter))
            }
        })
    }

    /// Write the transformed `src` into `dst` (empty) and return true, or return false when the
    /// text is unchanged (then `dst` is left empty and `src` is the result).
    fn apply(&self, src: &str, dst: &mut String, ascii: bool) -> bool {
        match self {
            Step::Nfkc => !ascii && nfkc(src, dst),
            Step::Casefold => casefold(src, dst, ascii),
            Step::CollapseWhitespace => collapse_whitespace(src, dst),
            Step::MaskNumbers(token) => mask_numbers(src, token, dst),
            Step::MaskIds { token, min_len } => mask_ids(src, token, *min_len, dst),
            Step::DropLines { whole, line } => drop_lines(src, whole, line, dst),
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

    /// True when the rule's output is ASCII whenever its input is (`ascii`) without testing it.
    fn keeps_ascii(&self, ascii: bool) -> bool {
        ascii
            && match self {
                Step::MaskNumbers(token) | Step::MaskIds { token, .. } => token.is_ascii(),
                Step::Replace(..) | Step::Nfkc => false,
                _ => true,
            }
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
        // The first item's article may end in the comma that separates it.
        assert_eq!(s.canonicalize("x a, and a b"), "x a and a b");
        assert_eq!(s.canonicalize("x a b, a c"), "x a b, a c");
        assert_eq!(s.canonicalize("x a c, a b"), "x a b, a c");
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
