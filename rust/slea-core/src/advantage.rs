//! Step-level advantages: discounted returns and the GRPO / GiGPO / SLEA / SALT estimators.
//!
//! A [`StepBatch`] holds one row per (episode, step) in any order: the task `group` (the G
//! rollouts of one task), the `episode`, the `step` index, the per-step env `reward`, the
//! step-group `key` (an anchor-observation hash for GiGPO, an observation-cluster id for SLEA,
//! the state key for SALT), the `invalid`-action flag and, for SALT, an `action_key`.
//! Building it validates the columns and lays the rows out episode by episode in `step` order
//! (O(n): one pass with a hash lookup per run of rows of the same episode, a counting sort only
//! when episodes are interleaved, and a sort of an episode's rows only when they arrive out of
//! step order).
//!
//! [`compute_advantages`] then follows verl-agent's GiGPO (`gigpo/core_gigpo.py`), with `p` the
//! invalid-action penalty and `v` a row's invalid flag (0 or 1):
//!
//! 1. `return[r] = reward[r] + gamma * return[next step of the episode]`, then
//!    `step_return[r] = return[r] - p * v[r]` (the penalty comes after discounting).
//! 2. The episode score is the undiscounted sum of the episode's rewards (verl-agent's
//!    `episode_rewards`, written on every step row); a row's score is that sum minus `p * v[r]`.
//! 3. `episode_advantage`: each row's score normalised by the statistics of all step rows of its
//!    group (longer episodes weigh more). A group of a single row has mean 0 and std 1, so it
//!    passes its raw score.
//! 4. `step_advantage` (gigpo, slea): each row's `step_return` normalised within its step group,
//!    keyed by (group, key), repeats inside one episode included. A step group of one row gives 0.
//! 5. `advantage = episode_advantage + step_weight * step_advantage`.
//!
//! Normalisation is `x - mean` (`mean_norm`) or `(x - mean) / (std + eps)` (`mean_std_norm`) with
//! the unbiased (n - 1) standard deviation. `grpo` keeps only the episode level. `salt` replaces
//! step 4 by trajectory-graph values, see [`Estimator::Salt`]. Everything is computed in f64 and
//! returned as f32.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use crate::error::{Error, Result};

/// How step-level advantages are formed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Estimator {
    /// Episode level only: `advantage = episode_advantage`, `step_advantage = 0`.
    Grpo,
    /// GiGPO: step groups keyed by (group, anchor-observation key).
    Gigpo,
    /// SLEA: GiGPO with step groups keyed by (group, observation-cluster id).
    Slea,
    /// SALT-style trajectory-graph values. Within a group, each episode's outcome is its score
    /// (sum of its rewards). For a row in state `s = (group, key)` taking action `a = action_key`:
    /// `V(s)` = mean outcome of the distinct episodes of the group that visited `s`, `Q(s, a)` =
    /// mean outcome of the distinct episodes that took `a` in `s` (an episode counts once however
    /// often it repeats the state or the pair). `step_advantage = Q(s, a) - V(s)`, divided by
    /// `std + eps` in `mean_std_norm` (the unbiased std of the outcomes behind `V(s)`, 1 when a
    /// single episode visited `s`), then minus `p * v` for an invalid row (after normalising, so
    /// the penalty keeps its size when all outcomes agree).
    Salt,
}

impl Estimator {
    /// The estimator names, as accepted by [`Estimator::parse`].
    pub const NAMES: [&'static str; 4] = ["grpo", "gigpo", "slea", "salt"];

    /// Parse an estimator name (`grpo`, `gigpo`, `slea`, `salt`).
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "grpo" => Ok(Estimator::Grpo),
            "gigpo" => Ok(Estimator::Gigpo),
            "slea" => Ok(Estimator::Slea),
            "salt" => Ok(Estimator::Salt),
            _ => Err(Error::invalid(
                "estimator",
                format!(
                    "unknown estimator {name:?}; choose one of {:?}",
                    Self::NAMES
                ),
            )),
        }
    }
}

/// Group normalisation of advantages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `x - mean`.
    MeanNorm,
    /// `(x - mean) / (std + eps)`, unbiased std.
    MeanStdNorm,
}

impl Mode {
    /// The mode names, as accepted by [`Mode::parse`].
    pub const NAMES: [&'static str; 2] = ["mean_norm", "mean_std_norm"];

    /// Parse a mode name (`mean_norm`, `mean_std_norm`).
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "mean_norm" => Ok(Mode::MeanNorm),
            "mean_std_norm" => Ok(Mode::MeanStdNorm),
            _ => Err(Error::invalid(
                "mode",
                format!("unknown mode {name:?}; choose one of {:?}", Self::NAMES),
            )),
        }
    }
}

/// Parameters of [`compute_advantages`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    pub estimator: Estimator,
    /// Discount of the step returns, in [0, 1].
    pub gamma: f64,
    pub mode: Mode,
    /// Weight of the step advantage in the sum, finite.
    pub step_weight: f64,
    /// Subtracted from an invalid row's return and score, finite and >= 0.
    pub invalid_penalty: f64,
    /// Added to the std in `mean_std_norm`, finite and > 0.
    pub eps: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            estimator: Estimator::Slea,
            gamma: 0.95,
            mode: Mode::MeanNorm,
            step_weight: 1.0,
            invalid_penalty: 0.1,
            eps: 1e-6,
        }
    }
}

impl Params {
    /// Check every number is in range; the error names the parameter.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.gamma) {
            return Err(Error::invalid(
                "gamma",
                format!("must be in [0, 1], got {}", self.gamma),
            ));
        }
        if !self.step_weight.is_finite() {
            return Err(Error::invalid(
                "step_weight",
                format!("must be finite, got {}", self.step_weight),
            ));
        }
        if !(self.invalid_penalty.is_finite() && self.invalid_penalty >= 0.0) {
            let got = self.invalid_penalty;
            return Err(Error::invalid(
                "invalid_penalty",
                format!("must be finite and >= 0, got {got}"),
            ));
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(Error::invalid(
                "eps",
                format!("must be finite and > 0, got {}", self.eps),
            ));
        }
        Ok(())
    }
}

/// The columns of a [`StepBatch`], one entry per row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Columns {
    pub group: Vec<i64>,
    pub episode: Vec<i64>,
    pub step: Vec<i64>,
    pub reward: Vec<f64>,
    pub key: Vec<u64>,
    pub invalid: Vec<bool>,
    /// Required by [`Estimator::Salt`] only.
    pub action_key: Option<Vec<u64>>,
}

impl Columns {
    /// Number of rows (the length of `group`).
    pub fn len(&self) -> usize {
        self.group.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.group.is_empty()
    }

    fn validate(&self) -> Result<()> {
        let n = self.len();
        if n > u32::MAX as usize {
            return Err(Error::invalid(
                "group",
                format!("at most {} rows, got {n}", u32::MAX),
            ));
        }
        let lengths = [
            ("episode", self.episode.len()),
            ("step", self.step.len()),
            ("reward", self.reward.len()),
            ("key", self.key.len()),
            ("invalid", self.invalid.len()),
            ("action_key", self.action_key.as_ref().map_or(n, Vec::len)),
        ];
        for (arg, len) in lengths {
            if len != n {
                return Err(Error::invalid(
                    arg,
                    format!("has {len} rows but group has {n}"),
                ));
            }
        }
        if let Some(row) = self.reward.iter().position(|r| !r.is_finite()) {
            let bad = self.reward[row];
            return Err(Error::invalid(
                "reward",
                format!("must be finite, row {row} is {bad}"),
            ));
        }
        Ok(())
    }
}

/// Validated step rows, laid out episode by episode in `step` order.
#[derive(Clone, Debug)]
pub struct StepBatch {
    cols: Columns,
    /// Row indices, episode after episode, each episode's rows in increasing `step`.
    order: Vec<u32>,
    /// `order[ep_start[e]..ep_start[e + 1]]` are the rows of dense episode `e`.
    ep_start: Vec<u32>,
    /// Dense group index of every row.
    row_group: Vec<u32>,
    n_groups: usize,
}

impl StepBatch {
    /// Validate `cols` (equal lengths, finite rewards, each episode in exactly one group, no
    /// repeated (episode, step)) and lay the rows out. O(n) for rows that arrive in step order.
    pub fn new(cols: Columns) -> Result<Self> {
        cols.validate()?;
        let index = EpisodeIndex::build(&cols)?;
        let (order, ep_start) = index.layout();
        let batch = StepBatch {
            cols,
            order,
            ep_start,
            row_group: index.row_group,
            n_groups: index.n_groups,
        };
        batch.sort_episodes()
    }

    /// Sort each episode's rows by step (only where needed) and reject repeated steps.
    fn sort_episodes(mut self) -> Result<Self> {
        let step = &self.cols.step;
        for w in self.ep_start.windows(2) {
            let rows = &mut self.order[w[0] as usize..w[1] as usize];
            if !rows
                .windows(2)
                .all(|p| step[p[0] as usize] < step[p[1] as usize])
            {
                rows.sort_unstable_by_key(|&r| step[r as usize]);
                if let Some(p) = rows
                    .windows(2)
                    .find(|p| step[p[0] as usize] == step[p[1] as usize])
                {
                    let r = p[0] as usize;
                    let (ep, s) = (self.cols.episode[r], step[r]);
                    let msg = format!("episode {ep} has step {s} more than once; (episode, step) pairs must be unique");
                    return Err(Error::invalid("step", msg));
                }
            }
        }
        Ok(self)
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.cols.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.cols.is_empty()
    }

    /// The validated columns, in the caller's row order.
    pub fn columns(&self) -> &Columns {
        &self.cols
    }

    /// Number of distinct episodes.
    pub fn n_episodes(&self) -> usize {
        self.ep_start.len() - 1
    }

    /// Number of distinct groups.
    pub fn n_groups(&self) -> usize {
        self.n_groups
    }

    /// Row indices of dense episode `e`, in increasing step.
    fn episode_rows(&self, e: usize) -> &[u32] {
        &self.order[self.ep_start[e] as usize..self.ep_start[e + 1] as usize]
    }
}

/// Dense episode and group ids of every row, from one pass over the rows.
struct EpisodeIndex {
    row_episode: Vec<u32>,
    row_group: Vec<u32>,
    ep_len: Vec<u32>,
    n_groups: usize,
    /// Every episode's rows are adjacent (true for rollouts collected episode by episode).
    contiguous: bool,
}

impl EpisodeIndex {
    fn build(cols: &Columns) -> Result<Self> {
        let n = cols.len();
        let mut episodes: FastMap<i64, u32> = FastMap::default();
        let mut groups: FastMap<i64, u32> = FastMap::default();
        let mut ep_group: Vec<(i64, u32)> = Vec::new();
        let mut index = EpisodeIndex {
            row_episode: Vec::with_capacity(n),
            row_group: Vec::with_capacity(n),
            ep_len: Vec::new(),
            n_groups: 0,
            contiguous: true,
        };
        let mut run: Option<(i64, u32)> = None;
        for r in 0..n {
            let id = cols.episode[r];
            let e = match run {
                Some((run_id, e)) if run_id == id => e,
                _ => {
                    let next = ep_group.len() as u32;
                    let e = *episodes.entry(id).or_insert(next);
                    if e == next {
                        let next_group = groups.len() as u32;
                        let g = *groups.entry(cols.group[r]).or_insert(next_group);
                        ep_group.push((cols.group[r], g));
                        index.ep_len.push(0);
                    } else {
                        index.contiguous = false;
                    }
                    run = Some((id, e));
                    e
                }
            };
            let (group_id, g) = ep_group[e as usize];
            if group_id != cols.group[r] {
                let other = cols.group[r];
                let msg = format!("episode {id} appears in groups {group_id} and {other}; an episode belongs to exactly one group");
                return Err(Error::invalid("group", msg));
            }
            index.ep_len[e as usize] += 1;
            index.row_episode.push(e);
            index.row_group.push(g);
        }
        index.n_groups = groups.len();
        Ok(index)
    }

    /// Rows episode after episode (a counting sort by dense episode, stable) and the offsets.
    fn layout(&self) -> (Vec<u32>, Vec<u32>) {
        let mut ep_start = Vec::with_capacity(self.ep_len.len() + 1);
        let mut total = 0u32;
        ep_start.push(0);
        for len in &self.ep_len {
            total += len;
            ep_start.push(total);
        }
        let n = self.row_episode.len();
        if self.contiguous {
            return ((0..n as u32).collect(), ep_start);
        }
        let mut fill: Vec<u32> = ep_start[..self.ep_len.len()].to_vec();
        let mut order = vec![0u32; n];
        for (r, &e) in self.row_episode.iter().enumerate() {
            order[fill[e as usize] as usize] = r as u32;
            fill[e as usize] += 1;
        }
        (order, ep_start)
    }
}

/// Per-row results of [`compute_advantages`], in the batch's row order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Advantages {
    /// `episode_advantage + step_weight * step_advantage`.
    pub advantage: Vec<f32>,
    pub episode_advantage: Vec<f32>,
    pub step_advantage: Vec<f32>,
    /// Discounted return of the row minus its invalid-action penalty.
    pub step_return: Vec<f32>,
}

/// Compute per-row advantages of `batch` with `params` (see the module docs). O(n).
pub fn compute_advantages(batch: &StepBatch, params: &Params) -> Result<Advantages> {
    params.validate()?;
    let cols = &batch.cols;
    let actions = match (params.estimator, cols.action_key.as_deref()) {
        (Estimator::Salt, None) => {
            let msg = "the salt estimator needs the action taken at every step: build the StepBatch with action_key";
            return Err(Error::invalid("action_key", msg));
        }
        (_, actions) => actions.unwrap_or_default(),
    };
    let (mut step_values, mut scores, ep_score) = returns_and_scores(batch, params);
    let step_return = to_f32(&step_values);
    let (groups, n_groups) = (&batch.row_group, batch.n_groups);
    normalise(&mut scores, groups, n_groups, Singleton::RawScore, params);
    let (step_adv, weight) = match params.estimator {
        Estimator::Grpo => {
            step_values.fill(0.0);
            (step_values, 0.0)
        }
        Estimator::Gigpo | Estimator::Slea => {
            let (ids, count) = dense_ids(batch.len(), |r| (groups[r], cols.key[r]));
            normalise(&mut step_values, &ids, count, Singleton::Zero, params);
            (step_values, params.step_weight)
        }
        Estimator::Salt => {
            drop(step_values);
            let adv = salt_step_advantages(batch, actions, &ep_score, params);
            (adv, params.step_weight)
        }
    };
    let out = Advantages {
        advantage: scores
            .iter()
            .zip(&step_adv)
            .map(|(&e, &s)| (e + weight * s) as f32)
            .collect(),
        episode_advantage: to_f32(&scores),
        step_advantage: to_f32(&step_adv),
        step_return,
    };
    let columns = [
        &out.advantage,
        &out.episode_advantage,
        &out.step_advantage,
        &out.step_return,
    ];
    if columns.iter().any(|c| c.iter().any(|x| !x.is_finite())) {
        let msg =
            "magnitudes too large: returns or advantages overflow float32; rescale the rewards";
        return Err(Error::invalid("reward", msg));
    }
    Ok(out)
}

/// Per row: the discounted return minus the row's penalty, and the episode score (sum of the
/// episode's rewards) minus the row's penalty; per episode: the score.
fn returns_and_scores(batch: &StepBatch, p: &Params) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let cols = &batch.cols;
    let n = batch.len();
    let mut step_return = vec![0.0f64; n];
    let mut score = vec![0.0f64; n];
    let mut ep_score = vec![0.0f64; batch.n_episodes()];
    for (e, total_out) in ep_score.iter_mut().enumerate() {
        let rows = batch.episode_rows(e);
        let total: f64 = rows.iter().map(|&r| cols.reward[r as usize]).sum();
        *total_out = total;
        let mut running = 0.0f64;
        for &r in rows.iter().rev() {
            let r = r as usize;
            let penalty = if cols.invalid[r] {
                p.invalid_penalty
            } else {
                0.0
            };
            running = cols.reward[r] + p.gamma * running;
            step_return[r] = running - penalty;
            score[r] = total - penalty;
        }
    }
    (step_return, score, ep_score)
}

/// What a group of a single row normalises to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Singleton {
    /// Mean 0 and std 1: the raw value passes (verl-agent's episode level).
    RawScore,
    /// Mean = the value: the result is 0 (verl-agent's step level).
    Zero,
}

/// Normalise `values` in place within the groups `ids` (dense, `< n_ids`); see the module docs.
fn normalise(values: &mut [f64], ids: &[u32], n_ids: usize, singleton: Singleton, p: &Params) {
    let mut count = vec![0u32; n_ids];
    let mut mean = vec![0.0f64; n_ids];
    for (&v, &g) in values.iter().zip(ids) {
        count[g as usize] += 1;
        mean[g as usize] += v;
    }
    for (m, &c) in mean.iter_mut().zip(&count) {
        *m /= f64::from(c.max(1));
    }
    let mut std = vec![1.0f64; n_ids];
    if p.mode == Mode::MeanStdNorm {
        let mut m2 = vec![0.0f64; n_ids];
        for (&v, &g) in values.iter().zip(ids) {
            let d = v - mean[g as usize];
            m2[g as usize] += d * d;
        }
        for ((s, &m), &c) in std.iter_mut().zip(&m2).zip(&count) {
            if c > 1 {
                *s = (m / f64::from(c - 1)).sqrt();
            }
        }
    }
    for (v, &g) in values.iter_mut().zip(ids) {
        let g = g as usize;
        let centre = match (count[g], singleton) {
            (1, Singleton::RawScore) => 0.0,
            (1, Singleton::Zero) => *v,
            _ => mean[g],
        };
        *v = match p.mode {
            Mode::MeanNorm => *v - centre,
            Mode::MeanStdNorm => (*v - centre) / (std[g] + p.eps),
        };
    }
}

/// SALT step advantages: `Q(s, a) - V(s)` over distinct episodes, normalised, minus the penalty
/// (see [`Estimator::Salt`]).
fn salt_step_advantages(
    batch: &StepBatch,
    actions: &[u64],
    ep_score: &[f64],
    p: &Params,
) -> Vec<f64> {
    let cols = &batch.cols;
    let n = batch.len();
    let (state, n_states) = dense_ids(n, |r| (batch.row_group[r], cols.key[r]));
    let (action, n_actions) = dense_ids(n, |r| (state[r], actions[r]));
    let (v_count, v_mean) = episode_means(batch, &state, n_states, ep_score);
    let (_, q_mean) = episode_means(batch, &action, n_actions, ep_score);
    let mut v_std = vec![1.0f64; n_states];
    if p.mode == Mode::MeanStdNorm {
        let mut m2 = vec![0.0f64; n_states];
        for_each_distinct(batch, &state, n_states, |s, e| {
            let d = ep_score[e] - v_mean[s];
            m2[s] += d * d;
        });
        for ((sd, &m), &c) in v_std.iter_mut().zip(&m2).zip(&v_count) {
            if c > 1 {
                *sd = (m / f64::from(c - 1)).sqrt();
            }
        }
    }
    (0..n)
        .map(|r| {
            let s = state[r] as usize;
            let penalty = if cols.invalid[r] {
                p.invalid_penalty
            } else {
                0.0
            };
            let diff = q_mean[action[r] as usize] - v_mean[s];
            let value = match p.mode {
                Mode::MeanNorm => diff,
                Mode::MeanStdNorm => diff / (v_std[s] + p.eps),
            };
            value - penalty
        })
        .collect()
}

/// Count and mean of the episode scores of the distinct episodes behind every id.
fn episode_means(
    batch: &StepBatch,
    ids: &[u32],
    n_ids: usize,
    ep_score: &[f64],
) -> (Vec<u32>, Vec<f64>) {
    let mut count = vec![0u32; n_ids];
    let mut mean = vec![0.0f64; n_ids];
    for_each_distinct(batch, ids, n_ids, |id, e| {
        count[id] += 1;
        mean[id] += ep_score[e];
    });
    for (m, &c) in mean.iter_mut().zip(&count) {
        *m /= f64::from(c.max(1));
    }
    (count, mean)
}

/// Call `f(id, episode)` once for every distinct (id, episode) pair, episodes in batch order.
fn for_each_distinct(
    batch: &StepBatch,
    ids: &[u32],
    n_ids: usize,
    mut f: impl FnMut(usize, usize),
) {
    let mut last_episode = vec![u32::MAX; n_ids];
    for e in 0..batch.n_episodes() {
        for &r in batch.episode_rows(e) {
            let id = ids[r as usize] as usize;
            if last_episode[id] != e as u32 {
                last_episode[id] = e as u32;
                f(id, e);
            }
        }
    }
}

/// Dense ids (0, 1, ... in order of first appearance) of `key_of(r)` for rows `0..n`.
fn dense_ids<K: Hash + Eq + Copy>(n: usize, key_of: impl Fn(usize) -> K) -> (Vec<u32>, usize) {
    let mut map: FastMap<K, u32> = FastMap::default();
    let mut ids = Vec::with_capacity(n);
    let mut last: Option<(K, u32)> = None;
    for r in 0..n {
        let key = key_of(r);
        let id = match last {
            Some((k, id)) if k == key => id,
            _ => {
                let next = map.len() as u32;
                *map.entry(key).or_insert(next)
            }
        };
        last = Some((key, id));
        ids.push(id);
    }
    (ids, map.len())
}

fn to_f32(xs: &[f64]) -> Vec<f32> {
    xs.iter().map(|&x| x as f32).collect()
}

/// A hash map with a fast non-cryptographic hasher (ids are not attacker-chosen here).
type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<MixHasher>>;

/// FxHash-style word mixing with a SplitMix64 finaliser, so low and high bits are both good.
#[derive(Default, Clone, Copy)]
struct MixHasher(u64);

impl Hasher for MixHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_u32(&mut self, x: u32) {
        self.write_u64(u64::from(x));
    }

    fn write_i64(&mut self, x: i64) {
        self.write_u64(x as u64);
    }

    fn finish(&self) -> u64 {
        let mut z = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cols(group: &[i64], episode: &[i64], step: &[i64], reward: &[f64], key: &[u64]) -> Columns {
        Columns {
            group: group.to_vec(),
            episode: episode.to_vec(),
            step: step.to_vec(),
            reward: reward.to_vec(),
            key: key.to_vec(),
            invalid: vec![false; group.len()],
            action_key: None,
        }
    }

    fn params(estimator: Estimator, mode: Mode) -> Params {
        Params {
            estimator,
            mode,
            ..Params::default()
        }
    }

    fn close(a: &[f32], b: &[f64]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(&x, &y)| (f64::from(x) - y).abs() < 1e-5)
    }

    #[test]
    fn hand_computed_gigpo_example() {
        // Group 0: episode 1 = [0, 1] with keys [7, 8], episode 2 = [0] with key [7].
        let c = cols(
            &[0, 0, 0],
            &[1, 1, 2],
            &[0, 1, 0],
            &[0.0, 1.0, 0.0],
            &[7, 8, 7],
        );
        let batch = StepBatch::new(c).unwrap();
        let out = compute_advantages(&batch, &params(Estimator::Gigpo, Mode::MeanNorm)).unwrap();
        // Returns: ep1 = [0.95, 1.0], ep2 = [0]. Scores per row: [1, 1, 0], mean 2/3.
        assert!(close(&out.step_return, &[0.95, 1.0, 0.0]));
        assert!(close(
            &out.episode_advantage,
            &[1.0 / 3.0, 1.0 / 3.0, -2.0 / 3.0]
        ));
        // Step groups: key 7 = rows {0, 2} with mean 0.475; key 8 = singleton.
        assert!(close(&out.step_advantage, &[0.475, 0.0, -0.475]));
        assert!(close(
            &out.advantage,
            &[1.0 / 3.0 + 0.475, 1.0 / 3.0, -2.0 / 3.0 - 0.475]
        ));
    }

    #[test]
    fn penalty_after_discounting_and_singleton_group_passes_raw_score() {
        let mut c = cols(&[5, 5], &[1, 1], &[0, 1], &[2.0, 0.0], &[1, 2]);
        c.invalid = vec![false, true];
        c.group = vec![5, 5];
        let batch = StepBatch::new(c).unwrap();
        let out = compute_advantages(&batch, &params(Estimator::Gigpo, Mode::MeanNorm)).unwrap();
        assert!(close(&out.step_return, &[2.0, -0.1]));
        // Scores [2.0, 1.9], mean 1.95.
        assert!(close(&out.episode_advantage, &[0.05, -0.05]));
        let single = StepBatch::new(cols(&[3], &[9], &[4], &[1.5], &[0])).unwrap();
        for mode in [Mode::MeanNorm, Mode::MeanStdNorm] {
            let out = compute_advantages(&single, &params(Estimator::Gigpo, mode)).unwrap();
            let expect = if mode == Mode::MeanNorm {
                1.5
            } else {
                1.5 / (1.0 + 1e-6)
            };
            assert!(close(&out.episode_advantage, &[expect]));
            assert!(close(&out.step_advantage, &[0.0]));
        }
    }

    #[test]
    fn salt_hand_computed() {
        // One group, state 1 visited by three episodes with outcomes 1, 0, 0 (twice by episode 20).
        // Episode 10 took action 5; episodes 20 and 30 took action 6 (20 also action 5 later).
        let mut c = cols(
            &[0, 0, 0, 0],
            &[10, 20, 20, 30],
            &[0, 0, 1, 0],
            &[1.0, 0.0, 0.0, 0.0],
            &[1, 1, 1, 1],
        );
        c.action_key = Some(vec![5, 6, 5, 6]);
        let batch = StepBatch::new(c).unwrap();
        let out = compute_advantages(&batch, &params(Estimator::Salt, Mode::MeanNorm)).unwrap();
        // V = 1/3. Q(5) over episodes {10, 20} = 0.5, Q(6) over {20, 30} = 0.
        let v = 1.0 / 3.0;
        assert!(close(&out.step_advantage, &[0.5 - v, -v, 0.5 - v, -v]));
        let mut no_actions = cols(&[0], &[0], &[0], &[0.0], &[0]);
        no_actions.action_key = None;
        let batch = StepBatch::new(no_actions).unwrap();
        let err = compute_advantages(&batch, &params(Estimator::Salt, Mode::MeanNorm)).unwrap_err();
        assert!(err.to_string().starts_with("action_key:"), "{err}");
    }

    #[test]
    fn bad_columns_and_params_name_the_argument() {
        let check = |c: Columns, arg: &str| {
            let err = StepBatch::new(c).unwrap_err();
            assert!(err.to_string().starts_with(&format!("{arg}:")), "{err}");
        };
        check(
            cols(&[0, 0], &[0], &[0, 1], &[0.0, 0.0], &[0, 0]),
            "episode",
        );
        check(cols(&[0], &[0], &[0], &[f64::NAN], &[0]), "reward");
        check(cols(&[0], &[0], &[0], &[f64::INFINITY], &[0]), "reward");
        check(
            cols(&[0, 1], &[3, 3], &[0, 1], &[0.0, 0.0], &[0, 0]),
            "group",
        );
        check(
            cols(&[0, 0, 0], &[3, 3, 3], &[2, 0, 2], &[0.0; 3], &[0; 3]),
            "step",
        );
        let mut c = cols(&[0], &[0], &[0], &[0.0], &[0]);
        c.action_key = Some(vec![]);
        check(c, "action_key");
        let batch = StepBatch::new(cols(&[0], &[0], &[0], &[0.0], &[0])).unwrap();
        let bad = [
            (
                Params {
                    gamma: -0.1,
                    ..Params::default()
                },
                "gamma",
            ),
            (
                Params {
                    gamma: f64::NAN,
                    ..Params::default()
                },
                "gamma",
            ),
            (
                Params {
                    step_weight: f64::INFINITY,
                    ..Params::default()
                },
                "step_weight",
            ),
            (
                Params {
                    invalid_penalty: -1.0,
                    ..Params::default()
                },
                "invalid_penalty",
            ),
            (
                Params {
                    eps: 0.0,
                    ..Params::default()
                },
                "eps",
            ),
        ];
        for (p, arg) in bad {
            let err = compute_advantages(&batch, &p).unwrap_err();
            assert!(err.to_string().starts_with(&format!("{arg}:")), "{err}");
        }
        assert!(Estimator::parse("ppo")
            .unwrap_err()
            .to_string()
            .starts_with("estimator:"));
        assert!(Mode::parse("std")
            .unwrap_err()
            .to_string()
            .starts_with("mode:"));
        let huge =
            StepBatch::new(cols(&[0, 0], &[0, 0], &[0, 1], &[1e308, 1e308], &[0, 0])).unwrap();
        let err = compute_advantages(&huge, &Params::default()).unwrap_err();
        assert!(err.to_string().starts_with("reward:"), "{err}");
    }

    #[test]
    fn empty_batch_gives_empty_result() {
        let batch = StepBatch::new(Columns::default()).unwrap();
        for estimator in [Estimator::Grpo, Estimator::Gigpo, Estimator::Slea] {
            let out = compute_advantages(&batch, &params(estimator, Mode::MeanStdNorm)).unwrap();
            assert_eq!(out, Advantages::default());
        }
    }

    /// Obviously-correct O(n^2) restatement used as the proptest oracle.
    fn naive(c: &Columns, p: &Params) -> [Vec<f64>; 4] {
        let n = c.len();
        let pen = |r: usize| if c.invalid[r] { p.invalid_penalty } else { 0.0 };
        let ret: Vec<f64> = (0..n)
            .map(|r| {
                let mut later: Vec<usize> = (0..n)
                    .filter(|&j| c.episode[j] == c.episode[r] && c.step[j] >= c.step[r])
                    .collect();
                later.sort_by_key(|&j| c.step[j]);
                later
                    .iter()
                    .rev()
                    .fold(0.0, |acc, &j| c.reward[j] + p.gamma * acc)
                    - pen(r)
            })
            .collect();
        let score: Vec<f64> = (0..n)
            .map(|r| {
                let mut rows: Vec<usize> =
                    (0..n).filter(|&j| c.episode[j] == c.episode[r]).collect();
                rows.sort_by_key(|&j| c.step[j]);
                rows.iter().map(|&j| c.reward[j]).sum::<f64>() - pen(r)
            })
            .collect();
        let norm = |vals: &[f64], same: &dyn Fn(usize, usize) -> bool, raw: bool| -> Vec<f64> {
            (0..n)
                .map(|r| {
                    let members: Vec<f64> =
                        (0..n).filter(|&j| same(r, j)).map(|j| vals[j]).collect();
                    let k = members.len() as f64;
                    let (mean, std) = if members.len() == 1 {
                        (if raw { 0.0 } else { vals[r] }, 1.0)
                    } else {
                        let m = members.iter().sum::<f64>() / k;
                        (
                            m,
                            (members.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (k - 1.0))
                                .sqrt(),
                        )
                    };
                    match p.mode {
                        Mode::MeanNorm => vals[r] - mean,
                        Mode::MeanStdNorm => (vals[r] - mean) / (std + p.eps),
                    }
                })
                .collect()
        };
        let ep = norm(&score, &|a, b| c.group[a] == c.group[b], true);
        let st = match p.estimator {
            Estimator::Grpo => vec![0.0; n],
            _ => norm(
                &ret,
                &|a, b| c.group[a] == c.group[b] && c.key[a] == c.key[b],
                false,
            ),
        };
        let w = if p.estimator == Estimator::Grpo {
            0.0
        } else {
            p.step_weight
        };
        let adv = (0..n).map(|r| ep[r] + w * st[r]).collect();
        [adv, ep, st, ret]
    }

    /// Random valid batches: up to 3 groups of 1..6 episodes of 1..8 steps, small key alphabets,
    /// rows shuffled by a random permutation.
    fn batches() -> impl Strategy<Value = Columns> {
        let episode = (1usize..8).prop_flat_map(|len| {
            (
                prop::collection::vec(prop_oneof![Just(0.0), -3.0f64..3.0], len),
                prop::collection::vec(0u64..4, len),
                prop::collection::vec(any::<bool>(), len),
                prop::collection::vec(0u64..3, len),
            )
        });
        let group = prop::collection::vec(episode, 1..6);
        (prop::collection::vec(group, 1..4), any::<u64>()).prop_map(|(groups, seed)| {
            let mut c = Columns {
                action_key: Some(Vec::new()),
                ..Columns::default()
            };
            let mut ep_id = 100i64;
            for (g, episodes) in groups.into_iter().enumerate() {
                for (rewards, keys, invalid, actions) in episodes {
                    ep_id += 7;
                    for (s, r) in rewards.into_iter().enumerate() {
                        c.group.push(g as i64 * 1000 - 5);
                        c.episode.push(ep_id);
                        c.step.push(s as i64 * 2 + 1);
                        c.reward.push(r);
                    }
                    c.key.extend(keys);
                    c.invalid.extend(invalid);
                    c.action_key.as_mut().unwrap().extend(actions);
                }
            }
            permute(c, seed)
        })
    }

    fn permute(c: Columns, seed: u64) -> Columns {
        let n = c.len();
        let mut perm: Vec<usize> = (0..n).collect();
        let mut s = seed | 1;
        for i in (1..n).rev() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            perm.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let pick = |v: &Vec<u64>| perm.iter().map(|&i| v[i]).collect::<Vec<_>>();
        Columns {
            group: perm.iter().map(|&i| c.group[i]).collect(),
            episode: perm.iter().map(|&i| c.episode[i]).collect(),
            step: perm.iter().map(|&i| c.step[i]).collect(),
            reward: perm.iter().map(|&i| c.reward[i]).collect(),
            key: pick(&c.key),
            invalid: perm.iter().map(|&i| c.invalid[i]).collect(),
            action_key: c.action_key.as_ref().map(pick),
        }
    }

    fn any_params() -> impl Strategy<Value = Params> {
        (
            prop::sample::select(vec![Estimator::Grpo, Estimator::Gigpo, Estimator::Slea]),
            prop::sample::select(vec![Mode::MeanNorm, Mode::MeanStdNorm]),
            0.0f64..=1.0,
            prop_oneof![Just(0.0), Just(1.0), 0.0f64..2.0],
        )
            .prop_map(|(estimator, mode, gamma, step_weight)| Params {
                estimator,
                mode,
                gamma,
                step_weight,
                ..Params::default()
            })
    }

    proptest! {
        #[test]
        fn matches_naive_oracle(c in batches(), p in any_params()) {
            let out = compute_advantages(&StepBatch::new(c.clone()).unwrap(), &p).unwrap();
            let [adv, ep, st, ret] = naive(&c, &p);
            prop_assert!(close(&out.advantage, &adv));
            prop_assert!(close(&out.episode_advantage, &ep));
            prop_assert!(close(&out.step_advantage, &st));
            prop_assert!(close(&out.step_return, &ret));
        }

        #[test]
        fn row_order_does_not_matter(c in batches(), p in any_params(), seed in any::<u64>()) {
            let sorted = StepBatch::new(c.clone()).unwrap();
            let shuffled_cols = permute(c.clone(), seed);
            let shuffled = StepBatch::new(shuffled_cols.clone()).unwrap();
            for estimator in [p.estimator, Estimator::Salt] {
                let p = Params { estimator, ..p };
                let a = compute_advantages(&sorted, &p).unwrap();
                let b = compute_advantages(&shuffled, &p).unwrap();
                // Match rows by (episode, step).
                for j in 0..c.len() {
                    let i = (0..c.len())
                        .find(|&i| c.episode[i] == shuffled_cols.episode[j] && c.step[i] == shuffled_cols.step[j])
                        .unwrap();
                    prop_assert!((a.advantage[i] - b.advantage[j]).abs() < 1e-5);
                    prop_assert!((a.step_return[i] - b.step_return[j]).abs() < 1e-6);
                }
            }
        }

        #[test]
        fn estimator_invariants(c in batches(), p in any_params()) {
            let batch = StepBatch::new(c.clone()).unwrap();
            let grpo = compute_advantages(&batch, &Params { estimator: Estimator::Grpo, ..p }).unwrap();
            prop_assert_eq!(&grpo.advantage, &grpo.episode_advantage);
            prop_assert!(grpo.step_advantage.iter().all(|&x| x == 0.0));
            for estimator in [Estimator::Gigpo, Estimator::Slea, Estimator::Salt] {
                let q = Params { estimator, step_weight: 0.0, ..p };
                let out = compute_advantages(&batch, &q).unwrap();
                prop_assert_eq!(&out.advantage, &out.episode_advantage);
                prop_assert_eq!(&out.episode_advantage, &grpo.episode_advantage);
            }
            // All-distinct keys: every step group is a singleton, so gigpo == grpo.
            let distinct = Columns { key: (0..c.len() as u64).collect(), ..c };
            let batch = StepBatch::new(distinct).unwrap();
            let gigpo = compute_advantages(&batch, &Params { estimator: Estimator::Gigpo, ..p }).unwrap();
            prop_assert_eq!(&gigpo.advantage, &grpo.advantage);
        }

        #[test]
        fn arbitrary_columns_never_panic(
            group in prop::collection::vec(-2i64..2, 0..12),
            episode in prop::collection::vec(-3i64..3, 0..12),
            step in prop::collection::vec(-2i64..3, 0..12),
            reward in prop::collection::vec(prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(1e308), -5.0f64..5.0], 0..12),
            key in prop::collection::vec(any::<u64>(), 0..12),
            invalid in prop::collection::vec(any::<bool>(), 0..12),
            action in prop::option::of(prop::collection::vec(0u64..3, 0..12)),
            gamma in prop_oneof![Just(f64::NAN), -1.0f64..2.0],
        ) {
            let c = Columns { group, episode, step, reward, key, invalid, action_key: action };
            if let Ok(batch) = StepBatch::new(c) {
                for estimator in [Estimator::Grpo, Estimator::Gigpo, Estimator::Slea, Estimator::Salt] {
                    let p = Params { estimator, gamma, mode: Mode::MeanStdNorm, ..Params::default() };
                    if let Ok(out) = compute_advantages(&batch, &p) {
                        prop_assert_eq!(out.advantage.len(), batch.len());
                        prop_assert!(out.advantage.iter().all(|x| x.is_finite()));
                    }
                }
            }
        }
    }
}
