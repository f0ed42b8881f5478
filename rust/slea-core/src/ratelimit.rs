//! Token buckets driven by an explicit clock.
//!
//! A [`TokenBucket`] holds at most `capacity` tokens and gains `refill_per_tick` tokens per unit
//! of clock time. The clock is whatever the caller passes (the library passes the evolution
//! iteration, so "10 per step" is a bucket of capacity 10 refilled by 10 per iteration); nothing
//! here reads the wall clock, which keeps admission reproducible. A clock that goes backwards
//! refills nothing and does not move the bucket's notion of "now" back.
//!
//! Taking is split in two so that a caller can check for a token early and spend it only when the
//! guarded action actually happens ([`TokenBucket::has`] then [`TokenBucket::take`]).

use crate::error::{Error, Result};

/// A token bucket on an explicit clock. See the module docs.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    capacity: f64,
    refill_per_tick: f64,
    tokens: f64,
    now: f64,
}

impl TokenBucket {
    /// A full bucket at clock 0. `capacity` and `refill_per_tick` must be finite and >= 0.
    pub fn new(capacity: f64, refill_per_tick: f64) -> Result<Self> {
        check_rate("capacity", capacity)?;
        check_rate("refill_per_tick", refill_per_tick)?;
        Ok(TokenBucket {
            capacity,
            refill_per_tick,
            tokens: capacity,
            now: 0.0,
        })
    }

    /// Restore a bucket from saved state (see [`TokenBucket::state`]); validates every field.
    pub fn from_state(capacity: f64, refill_per_tick: f64, tokens: f64, now: f64) -> Result<Self> {
        let mut b = TokenBucket::new(capacity, refill_per_tick)?;
        if !(tokens.is_finite() && (0.0..=capacity).contains(&tokens)) {
            return Err(Error::invalid(
                "tokens",
                format!("must be in [0, {capacity}]"),
            ));
        }
        if !now.is_finite() {
            return Err(Error::invalid("now", "must be finite"));
        }
        b.tokens = tokens;
        b.now = now;
        Ok(b)
    }

    /// `(capacity, refill_per_tick, tokens, now)`, the whole state.
    pub fn state(&self) -> (f64, f64, f64, f64) {
        (self.capacity, self.refill_per_tick, self.tokens, self.now)
    }

    /// Move the clock to `now` and refill. Non-finite or earlier times refill nothing.
    pub fn advance(&mut self, now: f64) {
        if now.is_finite() && now > self.now {
            let gained = (now - self.now) * self.refill_per_tick;
            self.tokens = (self.tokens + gained).min(self.capacity);
            self.now = now;
        }
    }

    /// Tokens available at the current clock.
    pub fn available(&self) -> f64 {
        self.tokens
    }

    /// True when `n` tokens are available now (after [`TokenBucket::advance`]).
    pub fn has(&self, n: f64) -> bool {
        self.tokens >= n
    }

    /// Spend `n` tokens if available; returns whether they were spent.
    pub fn take(&mut self, n: f64) -> bool {
        if self.has(n) {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

fn check_rate(arg: &str, v: f64) -> Result<()> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(Error::invalid(
            arg,
            format!("must be finite and >= 0, got {v}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn per_step_budget_refills_on_the_next_step() {
        let mut b = TokenBucket::new(10.0, 10.0).unwrap();
        b.advance(3.0);
        for _ in 0..10 {
            assert!(b.take(1.0));
        }
        assert!(!b.take(1.0));
        b.advance(3.0);
        assert!(!b.has(1.0), "same step, no refill");
        b.advance(2.0);
        assert!(!b.has(1.0), "clock going back refills nothing");
        b.advance(4.0);
        assert_eq!(b.available(), 10.0);
    }

    #[test]
    fn rejects_bad_rates() {
        assert!(TokenBucket::new(f64::NAN, 1.0).is_err());
        assert!(TokenBucket::new(1.0, -1.0).is_err());
        assert!(TokenBucket::from_state(2.0, 1.0, 3.0, 0.0).is_err());
        assert!(TokenBucket::from_state(2.0, 1.0, 1.0, f64::INFINITY).is_err());
    }

    proptest! {
        #[test]
        fn tokens_stay_in_range(cap in 0u32..20, rate in 0u32..20,
                                ops in proptest::collection::vec((0u32..50, 0u32..3), 0..100)) {
            let mut b = TokenBucket::new(cap as f64, rate as f64).unwrap();
            let mut taken_at = std::collections::HashMap::<u64, u32>::new();
            for (t, n) in ops {
                b.advance(t as f64);
                if b.take(n as f64) {
                    *taken_at.entry(b.state().3 as u64).or_default() += n;
                }
                prop_assert!(b.available() >= 0.0 && b.available() <= cap as f64);
            }
            // Never more than the capacity is spent at one clock value.
            for (_, n) in taken_at {
                prop_assert!(n <= cap);
            }
        }
    }
}
