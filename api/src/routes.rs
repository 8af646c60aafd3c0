//! The contract's routes, each declared once: method, path, name (metrics, logs, the
//! Lambda function's binary), who may call it, and its handler. The dispatch, the
//! local server's router, the function list that `template.yaml` is checked
//! against and the authorization matrix test are all derived from this table.

use crate::auth::Role;
use crate::error::ApiError;
use crate::http::Incoming;
use crate::{claims, fraud, graphql, medcards, payments, queries, transfers, wallets, App};
use shared::ports::{RequestKind, StoredResponse};

/// Who may call a route. The application layer decides each case (`shared::app`);
/// this is the route's promise, which the authorization matrix test holds it to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token needed.
    Public,
    /// Any authenticated caller, acting on what is its own (its new wallet, its lists).
    Caller,
    /// The party the route names — the wallet's owner, the payment's merchant, the
    /// card's sponsoring insurer, … as its handler says — or `admin`.
    Party,
    /// The party, which must also hold the role, or `admin`.
    PartyWithRole(Role),
    /// `admin` only.
    Admin,
}

macro_rules! routes {
    ($( $(#[$doc:meta])* $variant:ident: $method:ident $path:literal, $name:literal, $access:expr => $handler:path; )*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Route {
            $( $(#[$doc])* $variant, )*
        }

        impl Route {
            pub const ALL: &[Route] = &[ $( Route::$variant, )* ];

            pub fn method(self) -> &'static str {
                match self { $( Route::$variant => stringify!($method), )* }
            }

            /// The path template, in API Gateway's (and axum's) `{param}` syntax.
            pub fn path(self) -> &'static str {
                match self { $( Route::$variant => $path, )* }
            }

            /// The name in metrics and logs (`wallet.debit`); its function's binary is
            /// the name with dashes (`wallet-debit`).
            pub fn name(self) -> &'static str {
                match self { $( Route::$variant => $name, )* }
            }

            pub fn access(self) -> Access {
                match self { $( Route::$variant => $access, )* }
            }
        }

        /// Runs the route's handler.
        pub(crate) async fn dispatch(app: &App, route: Route, incoming: &Incoming) -> Result<StoredResponse, ApiError> {
            match route { $( Route::$variant => $handler(app, incoming).await, )* }
        }
    };
}

routes! {
    CreateWallet: POST "/api/v2/commands/wallets/create", "wallet.create", Access::Caller => wallets::create;
    /// `pending → active` by the owner; lifting a suspension is `admin` only.
    ActivateWallet: POST "/api/v2/commands/wallets/{walletId}/activate", "wallet.activate", Access::Party => wallets::activate;
    SuspendWallet: POST "/api/v2/commands/wallets/{walletId}/suspend", "wallet.suspend", Access::Admin => wallets::suspend;
    CloseWallet: POST "/api/v2/commands/wallets/{walletId}/close", "wallet.close", Access::Party => wallets::close;
    CreditWallet: POST "/api/v2/commands/wallets/{walletId}/credit", "wallet.credit", Access::Party => wallets::credit;
    DebitWallet: POST "/api/v2/commands/wallets/{walletId}/debit", "wallet.debit", Access::Party => wallets::debit;
    /// The source wallet's owner.
    CreateTransfer: POST "/api/v2/commands/transfers", "transfer.create", Access::Party => transfers::create;
    GetWallet: GET "/api/v2/wallets/{walletId}", "wallet.get", Access::Party => queries::wallet;
    ListTransactions: GET "/api/v2/wallets/{walletId}/transactions", "wallet.transactions", Access::Party => queries::transactions;
    GetBalance: GET "/api/v2/wallets/{walletId}/balance", "wallet.balance", Access::Party => queries::balance;
    MyWallets: GET "/api/v2/users/me/wallets", "user.wallets", Access::Caller => queries::my_wallets;
    /// The source's or the destination's owner.
    GetTransfer: GET "/api/v2/transfers/{transferId}", "transfer.get", Access::Party => queries::transfer;
    /// The payer wallet's owner.
    AuthorizePayment: POST "/api/v2/commands/payments", "payment.authorize", Access::Party => payments::authorize;
    /// The merchant wallet's owner (also void and refund).
    CapturePayment: POST "/api/v2/commands/payments/{paymentId}/capture", "payment.capture", Access::Party => payments::capture;
    VoidPayment: POST "/api/v2/commands/payments/{paymentId}/void", "payment.void", Access::Party => payments::void;
    RefundPayment: POST "/api/v2/commands/payments/{paymentId}/refund", "payment.refund", Access::Party => payments::refund;
    /// The payer's or the merchant's owner.
    GetPayment: GET "/api/v2/payments/{paymentId}", "payment.get", Access::Party => payments::get;
    /// An insurer owning the sponsor wallet.
    IssueMedCard: POST "/api/v2/commands/medcards", "medcard.issue", Access::PartyWithRole(Role::Insurer) => medcards::issue;
    /// The sponsoring insurer (also suspend, expire and the limit).
    ActivateMedCard: POST "/api/v2/commands/medcards/{medcardId}/activate", "medcard.activate", Access::PartyWithRole(Role::Insurer) => medcards::activate;
    SuspendMedCard: POST "/api/v2/commands/medcards/{medcardId}/suspend", "medcard.suspend", Access::PartyWithRole(Role::Insurer) => medcards::suspend;
    ExpireMedCard: POST "/api/v2/commands/medcards/{medcardId}/expire", "medcard.expire", Access::PartyWithRole(Role::Insurer) => medcards::expire;
    /// The sponsoring insurer or the card holder.
    AddBeneficiary: POST "/api/v2/commands/medcards/{medcardId}/beneficiaries", "medcard.beneficiary-add", Access::Party => medcards::add_beneficiary;
    RemoveBeneficiary: DELETE "/api/v2/commands/medcards/{medcardId}/beneficiaries/{beneficiaryId}", "medcard.beneficiary-remove", Access::Party => medcards::remove_beneficiary;
    ChangeMedCardLimit: POST "/api/v2/commands/medcards/{medcardId}/limit", "medcard.limit", Access::PartyWithRole(Role::Insurer) => medcards::change_limit;
    /// The holder or the sponsoring insurer (also spend and claims).
    GetMedCard: GET "/api/v2/medcards/{medcardId}", "medcard.get", Access::Party => medcards::get;
    MedCardSpend: GET "/api/v2/medcards/{medcardId}/spend", "medcard.spend", Access::Party => medcards::spend;
    MedCardClaims: GET "/api/v2/medcards/{medcardId}/claims", "medcard.claims", Access::Party => claims::of_medcard;
    /// A pharmacy owning the pharmacy wallet; the copayment only from the card holder's wallet.
    SubmitPrescriptionClaim: POST "/api/v2/commands/claims/prescriptions", "claim.submit", Access::PartyWithRole(Role::Pharmacy) => claims::submit;
    /// The pharmacy that filed it, the card holder, the sponsoring insurer.
    GetClaim: GET "/api/v2/claims/{claimId}", "claim.get", Access::Party => claims::get;
    /// The pharmacy wallet's owner.
    PharmacyClaims: GET "/api/v2/pharmacies/{pharmacyWalletId}/claims", "pharmacy.claims", Access::Party => claims::of_pharmacy;
    MyClaims: GET "/api/v2/users/me/claims", "user.claims", Access::Caller => claims::of_holder;
    /// The provider wallet's owner.
    SubmitInsuranceClaim: POST "/api/v2/commands/insurance-claims", "insurance-claim.submit", Access::Party => claims::submit_insurance;
    /// The sponsoring insurer (also reject).
    ApproveInsuranceClaim: POST "/api/v2/commands/insurance-claims/{claimId}/approve", "insurance-claim.approve", Access::PartyWithRole(Role::Insurer) => claims::approve_insurance;
    RejectInsuranceClaim: POST "/api/v2/commands/insurance-claims/{claimId}/reject", "insurance-claim.reject", Access::PartyWithRole(Role::Insurer) => claims::reject_insurance;
    /// The provider, the holder, the sponsoring insurer.
    GetInsuranceClaim: GET "/api/v2/insurance-claims/{claimId}", "insurance-claim.get", Access::Party => claims::get_insurance;
    /// Fraud alerts the detector raised (`?walletId&status&limit&cursor`).
    FraudAlerts: GET "/api/v2/fraud/alerts", "fraud.alerts", Access::Admin => fraud::list;
    GetFraudAlert: GET "/api/v2/fraud/alerts/{alertId}", "fraud.alert-get", Access::Admin => fraud::get;
    ResolveFraudAlert: POST "/api/v2/commands/fraud/alerts/{alertId}/resolve", "fraud.alert-resolve", Access::Admin => fraud::resolve;
    /// Queries and mutations over the routes above, each field as its route's access says.
    GraphQL: POST "/graphql", "graphql", Access::Caller => graphql::serve;
    Health: GET "/health", "health", Access::Public => crate::health;
}

impl Route {
    pub fn is_command(self) -> bool {
        self.method() != "GET"
    }

    /// Which of the caller's rate-limit budgets a request spends. `POST /graphql`
    /// spends a query's: each mutation in it spends a command's as it runs
    /// ([`crate::graphql::bridge`]), so a document of many mutations costs what as
    /// many REST commands cost.
    pub fn budget(self) -> RequestKind {
        if self.is_command() && self != Route::GraphQL {
            RequestKind::Command
        } else {
            RequestKind::Query
        }
    }

    /// Whether the route needs a caller (everything but the health check).
    pub fn needs_caller(self) -> bool {
        self.access() != Access::Public
    }

    /// The Lambda function binary that serves the route (`functions/src/bin/`).
    pub fn binary(self) -> String {
        self.name().replace('.', "-")
    }
}
