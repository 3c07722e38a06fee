//! The arithmetic of one budget: its current window (lifetime, N rounds, S seconds), what is
//! spent and reserved in it, and the admission rule. Pure functions of the state and the
//! clock, so the in-process map and the shared PostgreSQL row run the very same rules.

use serde::{Deserialize, Serialize};

use crate::caller::{BudgetClaim, BudgetWindow};

/// One budget's state. Amounts are nano-USD (the ledger's unit; limits are micro-USD × 1000).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Start of the current duration window (Unix ms); the first request's time.
    pub window_start_ms: i64,
    /// Requests that reached the budget check in the current rounds window.
    pub rounds: u64,
    /// Settled spending in the current window.
    pub spent_nano_usd: u64,
    /// Worst cases of admitted requests that have not settled yet.
    pub reserved_nano_usd: u64,
    /// When every reservation counted in `reserved` is past its time-to-live (shared stores
    /// only: a replica that dies cannot release what it reserved).
    pub reserved_until_ms: i64,
}

/// When a window's budget comes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reset {
    /// Lifetime budget: never.
    Never,
    /// Duration window: at this Unix time (ms).
    At(i64),
    /// Rounds window: after this many more requests.
    AfterRequests(u64),
}

/// What is left, as told to the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Remaining {
    /// What is left of the limit now, in micro-USD.
    pub remaining_micro_usd: u64,
    /// The budget's limit, in micro-USD.
    pub limit_micro_usd: u64,
    /// When the window's budget comes back.
    pub reset: Reset,
}

/// A request whose worst case does not fit in what is left of its window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "budget exceeded: {} USD left of {} USD{}; this request may cost up to {} USD",
    usd(.remaining.remaining_micro_usd),
    usd(.remaining.limit_micro_usd),
    describe_reset(.remaining.reset),
    usd(.needed_nano_usd.div_ceil(1000))
)]
pub struct BudgetExceeded {
    /// What is left of the budget.
    pub remaining: Remaining,
    /// The request's worst-case cost.
    pub needed_nano_usd: u64,
}

/// Micro-USD as an exact decimal dollar string.
pub fn usd(micro: u64) -> String {
    format!("{}.{:06}", micro / 1_000_000, micro % 1_000_000)
}

fn describe_reset(r: Reset) -> String {
    match r {
        Reset::Never => " (lifetime budget, no reset)".into(),
        Reset::At(ms) => format!("; the window resets at {}", rfc3339(ms)),
        Reset::AfterRequests(n) => format!("; the window resets after {n} more requests"),
    }
}

/// Unix milliseconds as an RFC 3339 timestamp, to the second (UTC).
pub fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn window_ms(d: std::time::Duration) -> i64 {
    (d.as_millis() as i64).max(1)
}

impl State {
    /// A budget seen for the first time: its first window starts now.
    pub fn new(now_ms: i64) -> State {
        State {
            window_start_ms: now_ms,
            ..State::default()
        }
    }

    /// Moves a duration window on to the one containing `now`. Windows tumble from the
    /// first request: [t0, t0+S), [t0+S, t0+2S), … and a new one starts with nothing spent.
    fn roll_duration(&mut self, window: BudgetWindow, now_ms: i64) {
        if let BudgetWindow::Duration(d) = window {
            let len = window_ms(d);
            if now_ms >= self.window_start_ms + len {
                let passed = (now_ms - self.window_start_ms) / len;
                self.window_start_ms += passed * len;
                self.spent_nano_usd = 0;
            }
        }
    }

    /// Admits a request whose worst case is `worst` (nano-USD), or says why not. Every
    /// request that reaches the check counts as a round, admitted or not — otherwise an
    /// exhausted rounds window would never reset. A request is admitted when its worst case
    /// fits in what is neither spent nor reserved; an exhausted budget admits nothing, not
    /// even a request that costs nothing.
    pub fn reserve(
        &mut self,
        claim: &BudgetClaim,
        worst: u64,
        now_ms: i64,
        ttl_ms: Option<i64>,
    ) -> Result<Remaining, BudgetExceeded> {
        self.roll_duration(claim.window, now_ms);
        if let BudgetWindow::Rounds(n) = claim.window {
            if self.rounds >= n.max(1) {
                self.rounds = 0;
                self.spent_nano_usd = 0;
            }
            self.rounds += 1;
        }
        if ttl_ms.is_some() && now_ms > self.reserved_until_ms {
            self.reserved_nano_usd = 0;
        }
        let limit = claim.limit_micro_usd.saturating_mul(1000);
        let used = self.spent_nano_usd.saturating_add(self.reserved_nano_usd);
        if used >= limit || worst > limit - used {
            return Err(BudgetExceeded {
                remaining: self.remaining(claim),
                needed_nano_usd: worst,
            });
        }
        self.reserved_nano_usd += worst;
        if let Some(ttl) = ttl_ms {
            self.reserved_until_ms = self.reserved_until_ms.max(now_ms + ttl);
        }
        Ok(self.remaining(claim))
    }

    /// Replaces a reservation by the request's real cost (0 for a release). The cost goes
    /// to the window current when the request ends.
    pub fn settle(
        &mut self,
        claim: &BudgetClaim,
        reserved: u64,
        actual: u64,
        now_ms: i64,
    ) -> Remaining {
        self.roll_duration(claim.window, now_ms);
        self.reserved_nano_usd = self.reserved_nano_usd.saturating_sub(reserved);
        self.spent_nano_usd = self.spent_nano_usd.saturating_add(actual);
        self.remaining(claim)
    }

    /// What is left now, without changing anything but an elapsed duration window.
    pub fn peek(&mut self, claim: &BudgetClaim, now_ms: i64) -> Remaining {
        self.roll_duration(claim.window, now_ms);
        self.remaining(claim)
    }

    fn remaining(&self, claim: &BudgetClaim) -> Remaining {
        let limit = claim.limit_micro_usd.saturating_mul(1000);
        let used = self.spent_nano_usd.saturating_add(self.reserved_nano_usd);
        Remaining {
            remaining_micro_usd: limit.saturating_sub(used) / 1000,
            limit_micro_usd: claim.limit_micro_usd,
            reset: match claim.window {
                BudgetWindow::Lifetime => Reset::Never,
                BudgetWindow::Duration(d) => Reset::At(self.window_start_ms + window_ms(d)),
                BudgetWindow::Rounds(n) => {
                    Reset::AfterRequests(n.max(1).saturating_sub(self.rounds))
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caller::BudgetScope;
    use std::time::Duration;

    fn claim(limit_micro: u64, window: BudgetWindow) -> BudgetClaim {
        BudgetClaim {
            limit_micro_usd: limit_micro,
            scope: BudgetScope::Session,
            window,
        }
    }

    #[test]
    fn lifetime_reserve_settle_release_arithmetic() {
        let c = claim(10, BudgetWindow::Lifetime); // 10 µUSD = 10,000 nUSD
        let mut s = State::new(0);
        let r = s.reserve(&c, 4_000, 0, None).unwrap();
        assert_eq!(r.remaining_micro_usd, 6);
        assert_eq!(r.reset, Reset::Never);
        // Settling below the reservation gives the difference back.
        assert_eq!(s.settle(&c, 4_000, 1_500, 0).remaining_micro_usd, 8);
        // A release (actual 0) gives it all back.
        s.reserve(&c, 8_000, 0, None).unwrap();
        assert_eq!(s.settle(&c, 8_000, 0, 0).remaining_micro_usd, 8);
        // Exactly what is left fits; one nano more does not.
        let e = s.reserve(&c, 8_501, 0, None).unwrap_err();
        assert_eq!(e.remaining.remaining_micro_usd, 8);
        assert_eq!(e.needed_nano_usd, 8_501);
        s.reserve(&c, 8_500, 0, None).unwrap();
        s.settle(&c, 8_500, 8_500, 0);
        assert_eq!(s.spent_nano_usd, 10_000);
        // Exhausted: even a free request is refused.
        assert!(s.reserve(&c, 0, 0, None).is_err());
        assert!(
            e.to_string().contains("0.000008 USD left of 0.000010 USD"),
            "{e}"
        );
    }

    #[test]
    fn rounds_windows_tumble_every_n_requests_admitted_or_not() {
        let c = claim(10, BudgetWindow::Rounds(3));
        let mut s = State::new(0);
        s.reserve(&c, 6_000, 0, None).unwrap();
        s.settle(&c, 6_000, 6_000, 0);
        // Round 2 does not fit; it still counts.
        let e = s.reserve(&c, 6_000, 0, None).unwrap_err();
        assert_eq!(e.remaining.reset, Reset::AfterRequests(1));
        let r = s.reserve(&c, 4_000, 0, None).unwrap();
        assert_eq!(
            (r.remaining_micro_usd, r.reset),
            (0, Reset::AfterRequests(0))
        );
        s.settle(&c, 4_000, 4_000, 0);
        // Round 4 opens a new window with the whole budget.
        let r = s.reserve(&c, 6_000, 0, None).unwrap();
        assert_eq!(
            (r.remaining_micro_usd, r.reset),
            (4, Reset::AfterRequests(2))
        );
    }

    #[test]
    fn duration_windows_tumble_from_the_first_request() {
        let c = claim(10, BudgetWindow::Duration(Duration::from_secs(60)));
        let mut s = State::new(1_000);
        let r = s.reserve(&c, 9_000, 1_000, None).unwrap();
        assert_eq!(r.reset, Reset::At(61_000));
        s.settle(&c, 9_000, 9_000, 2_000);
        assert!(s.reserve(&c, 2_000, 60_999, None).is_err());
        // 60 s after the first request: a fresh window, aligned to it.
        let r = s.reserve(&c, 2_000, 61_000, None).unwrap();
        assert_eq!((r.remaining_micro_usd, r.reset), (8, Reset::At(121_000)));
        // Three windows later, still aligned; a settle after the window moved charges the
        // new window and drops the old window's spending.
        let r = s.settle(&c, 2_000, 1_000, 200_000);
        assert_eq!((r.remaining_micro_usd, r.reset), (9, Reset::At(241_000)));
    }

    #[test]
    fn shared_reservations_expire_after_their_ttl() {
        let c = claim(10, BudgetWindow::Lifetime);
        let mut s = State::new(0);
        s.reserve(&c, 10_000, 0, Some(1_000)).unwrap();
        assert!(s.reserve(&c, 1, 500, Some(1_000)).is_err());
        // The replica that reserved it died; past the TTL the hold is gone.
        s.reserve(&c, 10_000, 1_001, Some(1_000)).unwrap();
        assert_eq!(s.reserved_until_ms, 2_001);
    }
}
