//! Who is calling and what their token lets them do: the one value the auth stage hands to
//! the rest of the request (allowlist checks, budgets, spend rows, request events).
//! Auth builds it from a verified token; nothing else constructs one on the request path.

use std::time::Duration;

/// A verified caller. With auth off there is none (`RequestContext::caller` is `None`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// CAIP-10 account id of the signer (`solana:<ref>:<pubkey>`, `eip155:<chain>:0x…`), or the
    /// `sub`/`iss` of an operator-signed token.
    pub account: String,
    /// The token's `jti`, else a hash of the token: one token is one session.
    pub session: String,
    /// What the token may reach: model endpoints, or also `/admin/*`.
    pub scope: Scope,
    /// Glob patterns over route names and `provider:model_id`; `None`: every model.
    pub models: Option<Vec<String>>,
    /// The token's spending limit; `None`: no budget.
    pub budget: Option<BudgetClaim>,
    /// The token's rate limits (claims `rpm`, `tpm`, `rate_scope`); `None`: the config's.
    pub rate: Option<RateClaim>,
}

/// Rate limits carried by a token: they narrow the config's `rate_limits.defaults`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateClaim {
    /// `rpm`: requests per minute.
    pub requests: Option<u64>,
    /// `tpm`: tokens per minute.
    pub tokens: Option<u64>,
    /// `rate_scope: account`: the limits narrow the account's (every token of it together);
    /// else (`session`, the default) they hold for this token alone.
    pub per_account: bool,
}

/// The `scope` claim: which routes a token may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// `/admin/*` and everything an api token may do.
    Admin,
    /// Model endpoints only.
    Api,
}

/// A spending limit carried by a token (claims `budget`, `budget_scope`, `budget_range`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetClaim {
    /// The limit, in micro-USD.
    pub limit_micro_usd: u64,
    /// Whose spending counts against it.
    pub scope: BudgetScope,
    /// When the spending resets.
    pub window: BudgetWindow,
}

/// The `budget_scope` claim: whose spending a budget covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BudgetScope {
    /// This token alone (keyed by `Caller::session`).
    Session,
    /// Every token of the account together (keyed by `Caller::account`).
    Account,
}

/// The `budget_range` claim: when a budget's spending resets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BudgetWindow {
    /// No reset.
    Lifetime,
    /// Tumbling windows of N requests.
    Rounds(u64),
    /// Tumbling windows of this length, starting at the first request.
    Duration(Duration),
}

impl Caller {
    /// The key a budget is kept under: the session or the account, per the claim's scope.
    pub fn budget_key(&self) -> Option<(BudgetClaim, &str)> {
        let claim = self.budget?;
        let key = match claim.scope {
            BudgetScope::Session => self.session.as_str(),
            BudgetScope::Account => self.account.as_str(),
        };
        Some((claim, key))
    }
}
