//! Rate limits: requests and tokens per minute, per account (the config's `defaults`), per
//! token (JWT claims `rpm` / `tpm`), per account on a route (`routes`) and per provider
//! (`providers`: the provider's own quota, spread over the callers and failed over when
//! spent). A request takes 1 from every requests limit and its worst-case tokens (the
//! budget's bound) from every tokens limit, all or nothing; when it ends the tokens are
//! settled to what it used. Each key's window is a minute of per-second buckets
//! (`window.rs`: no 60 s ever admit more than the limit), kept in a store (`store.rs`):
//! memory, Redis or PostgreSQL, so replicas share them.

pub mod store;
pub mod window;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use http::{HeaderName, HeaderValue};
use serde_json::json;

use crate::caller::Caller;
use crate::error::{Error, ErrorKind};
pub use store::{Store, StoreError, Take};
pub use window::Decision;

/// Limits per minute of one scope; `None`: not limited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rates {
    /// `requests_per_minute`.
    pub requests: Option<u64>,
    /// `tokens_per_minute`.
    pub tokens: Option<u64>,
}

impl Rates {
    fn is_empty(&self) -> bool {
        self.requests.is_none() && self.tokens.is_none()
    }
}

/// What a limited request's scope is, for the 429, the metrics and the event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `rate_limits.defaults` (or a claim with `rate_scope: account`): the caller's account.
    Account,
    /// The token's own `rpm` / `tpm` claims.
    Token,
    /// `rate_limits.routes.<route>`, per account.
    Route,
    /// `rate_limits.providers.<provider>`, the provider's quota.
    Provider,
}

impl Scope {
    /// `account`, `token`, `route`, `provider`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Account => "account",
            Scope::Token => "token",
            Scope::Route => "route",
            Scope::Provider => "provider",
        }
    }
}

/// Requests or tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Requests per minute.
    Requests,
    /// Tokens per minute.
    Tokens,
}

impl Kind {
    /// `requests` / `tokens`: OpenAI's header suffixes.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Requests => "requests",
            Kind::Tokens => "tokens",
        }
    }
}

/// One limit of a request: where it is kept and what it is.
#[derive(Clone, Debug)]
struct Limit {
    scope: Scope,
    kind: Kind,
    take: Take,
}

/// The token reservation a request holds in one bucket of a window, settled when it ends.
#[derive(Clone, Debug)]
pub struct TokenHold {
    key: String,
    bucket: i64,
    reserved: u64,
    /// For a provider's quota: whose; its share of the usage is that provider's attempt's.
    provider: Option<String>,
}

/// The tightest limit of each kind a request was checked against, for the
/// `x-ratelimit-*` headers on its response.
#[derive(Clone, Copy, Debug, Default)]
pub struct Headroom {
    requests: Option<Decision>,
    tokens: Option<Decision>,
}

impl Headroom {
    fn note(&mut self, kind: Kind, d: Decision) {
        let slot = match kind {
            Kind::Requests => &mut self.requests,
            Kind::Tokens => &mut self.tokens,
        };
        if slot.is_none_or(|s| d.remaining < s.remaining) {
            *slot = Some(d);
        }
    }

    /// `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, as OpenAI names them.
    pub fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::new();
        for (kind, d) in [("requests", self.requests), ("tokens", self.tokens)] {
            let Some(d) = d else { continue };
            let mut add = |name: &str, value: String| {
                if let (Ok(n), Ok(v)) = (
                    HeaderName::try_from(format!("x-ratelimit-{name}-{kind}")),
                    HeaderValue::try_from(value),
                ) {
                    out.push((n, v));
                }
            };
            add("limit", d.limit.to_string());
            add("remaining", d.remaining.to_string());
            add("reset", reset_text(d.reset_ms));
        }
        out
    }
}

/// OpenAI's reset spelling: `1s`, `6m0s`, `120ms`.
fn reset_text(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = ms.div_ceil(1000);
    if s < 60 {
        format!("{s}s")
    } else {
        format!("{}m{}s", s / 60, s % 60)
    }
}

/// What a request holds after it was let in.
#[derive(Debug, Default)]
pub struct Admission {
    /// For the response headers.
    pub headroom: Headroom,
    /// Token reservations to settle.
    pub holds: Vec<TokenHold>,
}

/// What a request carries about rate limits while it runs.
#[derive(Debug, Default)]
pub struct RequestRate {
    /// The tightest limits it was checked against, for its response headers; `None` for a
    /// caller no limit applies to.
    pub headroom: Option<Headroom>,
    /// Token reservations to settle when it ends.
    pub holds: Vec<TokenHold>,
    /// `scope:kind` of the limit that refused it.
    pub limited: Option<String>,
    /// `Retry-After` seconds of that refusal.
    pub retry_after_s: Option<u64>,
}

impl RequestRate {
    /// Notes the caller's refusal: its limit, wait and headroom.
    pub fn refused(&mut self, r: &Refusal) {
        self.skipped(r);
        if r.limit.is_some() {
            self.headroom = Some(r.headroom);
        }
    }

    /// Notes a provider quota that skipped an endpoint: the limit and the shortest wait
    /// (the caller's own headroom stays what its headers show).
    pub fn skipped(&mut self, r: &Refusal) {
        self.limited.clone_from(&r.limit);
        self.retry_after_s = match (self.retry_after_s, r.retry_after_s) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    /// The `x-ratelimit-*` headers, and for a failed request `Retry-After` when a limit
    /// (or a provider quota) had it wait.
    pub fn headers(&self, failed: bool) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = self.headroom.map(|h| h.headers()).unwrap_or_default();
        if let Some(s) = self.retry_after_s.filter(|_| failed) {
            out.push((http::header::RETRY_AFTER, HeaderValue::from(s)));
        }
        out
    }
}

/// A refusal: the 429 (or, for a store that cannot be reached and fails closed, the 503).
#[derive(Debug)]
pub struct Refusal {
    /// The error in every dialect's terms.
    pub error: Error,
    /// `scope:kind` of the limit, for metrics and the event; `None` for a store failure.
    pub limit: Option<String>,
    /// Seconds for `Retry-After`.
    pub retry_after_s: Option<u64>,
    /// The caller's headroom, for the `x-ratelimit-*` headers.
    pub headroom: Headroom,
}

/// `rate_limits:` resolved.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Per account.
    pub defaults: Rates,
    /// Per account on a route.
    pub routes: HashMap<String, Rates>,
    /// Per provider.
    pub providers: HashMap<String, Rates>,
    /// Admit callers when the store cannot be reached (`on_store_error: open`).
    pub fail_open: bool,
}

/// Every rate limit this gateway enforces.
pub struct RateLimits {
    store: Store,
    settings: Settings,
    /// When a store failure was last logged, so a down store is logged once a minute.
    last_warned_ms: AtomicI64,
}

fn now_ms() -> i64 {
    crate::spend::query_now_ms()
}

fn key(parts: &[&str], kind: Kind) -> String {
    let mut k = String::from("bitrouter:rl");
    for p in parts {
        k.push(':');
        k.push_str(p);
    }
    k.push(':');
    k.push_str(kind.as_str());
    k
}

impl RateLimits {
    /// Limits kept in `store`.
    pub fn new(store: Store, settings: Settings) -> Arc<RateLimits> {
        Arc::new(RateLimits {
            store,
            settings,
            last_warned_ms: AtomicI64::new(i64::MIN),
        })
    }

    /// No limits configured, in memory: only tokens' claims can limit.
    pub fn memory() -> Arc<RateLimits> {
        RateLimits::new(Store::memory(), Settings::default())
    }

    /// Where the windows live.
    pub fn engine(&self) -> &'static str {
        self.store.engine()
    }

    /// Whether `provider` has a quota.
    pub fn has_provider_quota(&self, provider: &str) -> bool {
        self.settings.providers.contains_key(provider)
    }

    /// The limits a request by `caller` on `route` falls under; their tokens are filled in
    /// by [`RateLimits::admit`], once the caller knows it needs them.
    pub fn limits_for(&self, caller: Option<&Caller>, route: Option<&str>) -> Limits {
        let account = caller.map_or("-", |c| c.account.as_str());
        let mut limits = Vec::new();
        let mut account_rates = self.settings.defaults;
        if let Some(claim) = caller.and_then(|c| c.rate) {
            let narrowed = Rates {
                requests: min_opt(account_rates.requests, claim.requests),
                tokens: min_opt(account_rates.tokens, claim.tokens),
            };
            if claim.per_account {
                account_rates = narrowed;
            } else if let Some(c) = caller {
                let rates = Rates {
                    requests: claim.requests,
                    tokens: claim.tokens,
                };
                push_rates(&mut limits, Scope::Token, &["sess", &c.session], rates);
            }
        }
        if !account_rates.is_empty() {
            push_rates(
                &mut limits,
                Scope::Account,
                &["acct", account],
                account_rates,
            );
        }
        if let Some(route) = route
            && let Some(rates) = self.settings.routes.get(route)
        {
            push_rates(
                &mut limits,
                Scope::Route,
                &["route", route, "acct", account],
                *rates,
            );
        }
        Limits(limits)
    }

    /// Lets a request in (taking 1 request and `tokens` worst-case tokens from each of its
    /// `limits`) or refuses it.
    pub async fn admit(&self, limits: Limits, tokens: u64) -> Result<Admission, Box<Refusal>> {
        self.take(with_tokens(limits.0, tokens), None).await
    }

    /// Takes `tokens` more from the tokens limits among `limits` (no request: the request was
    /// let in already), for a second upstream call made on its behalf (a mid-stream
    /// continuation). Settled with the request's other holds.
    pub async fn reserve_tokens(
        &self,
        limits: Limits,
        tokens: u64,
    ) -> Result<Admission, Box<Refusal>> {
        let tokens_only = limits
            .0
            .into_iter()
            .filter(|l| l.kind == Kind::Tokens)
            .collect();
        self.take(with_tokens(tokens_only, tokens), None).await
    }

    /// Takes 1 request and `tokens` from `provider`'s quota; `Ok(None)` when it has none.
    pub async fn provider(
        &self,
        provider: &str,
        tokens: u64,
    ) -> Result<Option<Admission>, Box<Refusal>> {
        let Some(rates) = self.settings.providers.get(provider) else {
            return Ok(None);
        };
        let mut limits = Vec::new();
        push_rates(&mut limits, Scope::Provider, &["prov", provider], *rates);
        self.take(with_tokens(limits, tokens), Some(provider))
            .await
            .map(Some)
    }

    async fn take(
        &self,
        limits: Vec<Limit>,
        provider: Option<&str>,
    ) -> Result<Admission, Box<Refusal>> {
        if limits.is_empty() {
            return Ok(Admission::default());
        }
        let now = now_ms();
        let takes: Vec<Take> = limits.iter().map(|l| l.take.clone()).collect();
        let decisions = match self.store.take(&takes, now).await {
            Ok(d) => d,
            Err(e) => return self.store_failed(e),
        };
        let mut headroom = Headroom::default();
        for (l, d) in limits.iter().zip(&decisions) {
            headroom.note(l.kind, *d);
        }
        if let Some((l, d)) = limits.iter().zip(&decisions).find(|(_, d)| !d.allowed) {
            return Err(Box::new(refusal(l, d, headroom, provider)));
        }
        let bucket = window::bucket(now);
        let holds = limits
            .iter()
            .filter(|l| l.kind == Kind::Tokens)
            .map(|l| TokenHold {
                key: l.take.key.clone(),
                bucket,
                reserved: l.take.cost,
                provider: provider.map(str::to_owned),
            })
            .collect();
        Ok(Admission { headroom, holds })
    }

    fn store_failed(&self, e: StoreError) -> Result<Admission, Box<Refusal>> {
        let now = now_ms();
        let last = self.last_warned_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 60_000
            && self
                .last_warned_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(store = self.engine(), error = %e, fail_open = self.settings.fail_open, "rate-limit store unavailable (logged once a minute)");
        }
        if self.settings.fail_open {
            return Ok(Admission::default());
        }
        Err(Box::new(Refusal {
            error: Error::new(
                ErrorKind::NotConfigured,
                format!(
                    "the rate-limit store cannot be reached ({e}); limited callers are refused until it can (rate_limits.on_store_error: closed)"
                ),
            ),
            limit: None,
            retry_after_s: Some(1),
            headroom: Headroom::default(),
        }))
    }

    /// Settles a finished request's token reservations to what its ledger `row` charged,
    /// `by_provider` being the provider whose attempt used them.
    pub fn settle_request(
        self: &Arc<Self>,
        rate: &mut RequestRate,
        row: &crate::spend::SpendRecord,
        by_provider: Option<&str>,
    ) {
        let used = row.tokens.input_total() + row.tokens.output_total();
        self.settle(std::mem::take(&mut rate.holds), used, by_provider);
    }

    /// Settles token reservations: `used` tokens in all, `by_provider` the provider whose
    /// attempt used them (quotas of providers tried before get 0). Runs detached: the
    /// store's round trip is not the caller's wait.
    pub fn settle(self: &Arc<Self>, holds: Vec<TokenHold>, used: u64, by_provider: Option<&str>) {
        if holds.is_empty() {
            return;
        }
        let deltas = settlements(holds, used, by_provider);
        if deltas.is_empty() {
            return;
        }
        // No runtime: the process is shutting down and the windows are about to go.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let this = self.clone();
        runtime.spawn(async move {
            for (key, bucket, delta) in deltas {
                if let Err(e) = this.store.adjust(&key, bucket, delta).await {
                    tracing::warn!(key = %key, error = %e, "rate-limit settlement failed");
                }
            }
        });
    }
}

/// What settling `holds` to `used` tokens changes, per key and bucket. A request may hold
/// one key more than once (a mid-stream continuation reserves again; two endpoints of one
/// provider each took from its quota): its usage counts once per key, added to the newest
/// bucket when it exceeds what was held, refunded newest first when below.
fn settlements(
    holds: Vec<TokenHold>,
    used: u64,
    by_provider: Option<&str>,
) -> Vec<(String, i64, i64)> {
    /// One key's holds: its provider (for a quota) and each (bucket, reserved), oldest first.
    struct Held {
        key: String,
        provider: Option<String>,
        parts: Vec<(i64, u64)>,
    }
    let mut keys: Vec<Held> = Vec::new();
    for h in holds {
        match keys.iter_mut().find(|k| k.key == h.key) {
            Some(k) => k.parts.push((h.bucket, h.reserved)),
            None => keys.push(Held {
                key: h.key,
                provider: h.provider,
                parts: vec![(h.bucket, h.reserved)],
            }),
        }
    }
    let mut out = Vec::new();
    for Held {
        key,
        provider,
        parts,
    } in keys
    {
        let used = match &provider {
            Some(p) if Some(p.as_str()) != by_provider => 0,
            _ => used,
        };
        let reserved: u64 = parts.iter().map(|&(_, r)| r).sum();
        if used > reserved {
            if let Some(&(bucket, _)) = parts.last() {
                out.push((
                    key,
                    bucket,
                    i64::try_from(used - reserved).unwrap_or(i64::MAX),
                ));
            }
            continue;
        }
        let mut refund = reserved - used;
        for &(bucket, held) in parts.iter().rev() {
            let back = refund.min(held);
            if back > 0 {
                out.push((
                    key.clone(),
                    bucket,
                    -i64::try_from(back).unwrap_or(i64::MAX),
                ));
            }
            refund -= back;
        }
    }
    out
}

/// The limits of a request, before its tokens are counted.
#[derive(Debug)]
pub struct Limits(Vec<Limit>);

impl Limits {
    /// No limit applies: nothing to check.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A tokens limit applies (the request's worst case must be computed).
    pub fn count_tokens(&self) -> bool {
        self.0.iter().any(|l| l.kind == Kind::Tokens)
    }
}

/// Appends a scope's requests and tokens limits (tokens cost 0 until `with_tokens`).
fn push_rates(out: &mut Vec<Limit>, scope: Scope, parts: &[&str], rates: Rates) {
    for (kind, limit) in [
        (Kind::Requests, rates.requests),
        (Kind::Tokens, rates.tokens),
    ] {
        if let Some(limit) = limit {
            out.push(Limit {
                scope,
                kind,
                take: Take {
                    key: key(parts, kind),
                    limit,
                    cost: u64::from(kind == Kind::Requests),
                },
            });
        }
    }
}

/// `limits` with every tokens limit taking `tokens`.
fn with_tokens(mut limits: Vec<Limit>, tokens: u64) -> Vec<Limit> {
    for l in limits.iter_mut().filter(|l| l.kind == Kind::Tokens) {
        l.take.cost = tokens;
    }
    limits
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn refusal(l: &Limit, d: &Decision, headroom: Headroom, provider: Option<&str>) -> Refusal {
    let what = match (l.scope, provider) {
        (Scope::Provider, Some(p)) => format!("provider {p:?}'s quota"),
        (Scope::Route, _) => "the route's limit for this account".to_owned(),
        (Scope::Token, _) => "the token's limit".to_owned(),
        _ => "the account's limit".to_owned(),
    };
    let per = format!("{} {} per minute", d.limit, l.kind.as_str());
    let retry_after_s = d.retry_after_ms.map(|ms| ms.div_ceil(1000).max(1));
    let message = match retry_after_s {
        Some(s) => format!("rate limit reached: {what} of {per}; retry in {s} s"),
        None => format!(
            "rate limit: this request needs {} {} alone, more than {what} of {per}",
            l.take.cost,
            l.kind.as_str()
        ),
    };
    let mut details = serde_json::Map::new();
    details.insert("limit_scope".into(), json!(l.scope.as_str()));
    details.insert("limit_kind".into(), json!(l.kind.as_str()));
    details.insert("limit_per_minute".into(), json!(d.limit));
    details.insert("remaining".into(), json!(d.remaining));
    details.insert("retry_after_ms".into(), json!(d.retry_after_ms));
    Refusal {
        error: Error::new(ErrorKind::RateLimitExceeded, message).with_details(details),
        limit: Some(format!("{}:{}", l.scope.as_str(), l.kind.as_str())),
        retry_after_s,
        headroom,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_held_twice_is_settled_once() {
        let hold = |bucket, reserved, provider: Option<&str>| TokenHold {
            key: "k".into(),
            bucket,
            reserved,
            provider: provider.map(str::to_owned),
        };
        let two = || vec![hold(10, 500, None), hold(12, 300, None)];
        // Used less than both: refunded newest first, never more than a bucket held.
        assert_eq!(settlements(two(), 600, None), vec![("k".into(), 12, -200)]);
        assert_eq!(
            settlements(two(), 100, None),
            vec![("k".into(), 12, -300), ("k".into(), 10, -400)]
        );
        // Used more: the rest is added once, to the newest bucket.
        assert_eq!(settlements(two(), 900, None), vec![("k".into(), 12, 100)]);
        assert!(settlements(two(), 800, None).is_empty());
        // A provider's quota whose attempt did not answer gets it all back.
        let quota = vec![hold(10, 500, Some("a")), hold(11, 500, Some("a"))];
        assert_eq!(
            settlements(quota, 900, Some("b")),
            vec![("k".into(), 11, -500), ("k".into(), 10, -500)]
        );
    }

    #[test]
    fn resets_are_spelled_like_openai() {
        assert_eq!(reset_text(120), "120ms");
        assert_eq!(reset_text(1_000), "1s");
        assert_eq!(reset_text(1_001), "2s");
        assert_eq!(reset_text(360_000), "6m0s");
    }

    #[tokio::test]
    async fn limits_are_taken_all_or_nothing_and_settled() {
        let limits = RateLimits::new(
            Store::memory(),
            Settings {
                defaults: Rates {
                    requests: Some(3),
                    tokens: Some(1_000),
                },
                ..Default::default()
            },
        );
        let a = limits
            .admit(limits.limits_for(None, None), 400)
            .await
            .unwrap();
        assert_eq!(a.holds.len(), 1);
        let h = a.headroom.headers();
        assert!(
            h.iter()
                .any(|(n, v)| n == "x-ratelimit-remaining-requests" && v == "2"),
            "{h:?}"
        );
        assert!(
            h.iter()
                .any(|(n, v)| n == "x-ratelimit-remaining-tokens" && v == "600"),
            "{h:?}"
        );
        limits
            .admit(limits.limits_for(None, None), 400)
            .await
            .unwrap();
        // Tokens refuse the third: 1,200 > 1,000. Its request is not taken either.
        let r = limits
            .admit(limits.limits_for(None, None), 400)
            .await
            .unwrap_err();
        assert_eq!(r.limit.as_deref(), Some("account:tokens"));
        assert_eq!(r.error.status(), http::StatusCode::TOO_MANY_REQUESTS);
        // Settled to what they used, the first two leave room.
        let held: Vec<TokenHold> = a.holds;
        limits.settle(held, 50, None);
        tokio::task::yield_now().await;
        for _ in 0..100 {
            if limits
                .admit(limits.limits_for(None, None), 400)
                .await
                .is_ok()
            {
                break;
            }
            tokio::task::yield_now().await;
        }
        // Now requests are spent: 3 taken.
        let r = limits
            .admit(limits.limits_for(None, None), 1)
            .await
            .unwrap_err();
        assert_eq!(r.limit.as_deref(), Some("account:requests"));
        assert!(r.retry_after_s.is_some_and(|s| s >= 1));
    }
}
