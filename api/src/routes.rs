//! The contract's routes: one table, served by the local server and deployed as one
//! Lambda function per route by `template.yaml`.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    CreateWallet,
    ActivateWallet,
    SuspendWallet,
    CloseWallet,
    CreditWallet,
    DebitWallet,
    CreateTransfer,
    GetWallet,
    ListTransactions,
    GetBalance,
    MyWallets,
    GetTransfer,
    AuthorizePayment,
    CapturePayment,
    VoidPayment,
    RefundPayment,
    GetPayment,
    IssueMedCard,
    ActivateMedCard,
    SuspendMedCard,
    ExpireMedCard,
    AddBeneficiary,
    RemoveBeneficiary,
    ChangeMedCardLimit,
    GetMedCard,
    MedCardSpend,
    MedCardClaims,
    SubmitPrescriptionClaim,
    GetClaim,
    PharmacyClaims,
    MyClaims,
    SubmitInsuranceClaim,
    ApproveInsuranceClaim,
    RejectInsuranceClaim,
    GetInsuranceClaim,
    Health,
}

impl Route {
    pub const ALL: &[Route] = &[
        Route::CreateWallet,
        Route::ActivateWallet,
        Route::SuspendWallet,
        Route::CloseWallet,
        Route::CreditWallet,
        Route::DebitWallet,
        Route::CreateTransfer,
        Route::GetWallet,
        Route::ListTransactions,
        Route::GetBalance,
        Route::MyWallets,
        Route::GetTransfer,
        Route::AuthorizePayment,
        Route::CapturePayment,
        Route::VoidPayment,
        Route::RefundPayment,
        Route::GetPayment,
        Route::IssueMedCard,
        Route::ActivateMedCard,
        Route::SuspendMedCard,
        Route::ExpireMedCard,
        Route::AddBeneficiary,
        Route::RemoveBeneficiary,
        Route::ChangeMedCardLimit,
        Route::GetMedCard,
        Route::MedCardSpend,
        Route::MedCardClaims,
        Route::SubmitPrescriptionClaim,
        Route::GetClaim,
        Route::PharmacyClaims,
        Route::MyClaims,
        Route::SubmitInsuranceClaim,
        Route::ApproveInsuranceClaim,
        Route::RejectInsuranceClaim,
        Route::GetInsuranceClaim,
        Route::Health,
    ];

    pub fn method(self) -> &'static str {
        match self {
            Route::GetWallet
            | Route::ListTransactions
            | Route::GetBalance
            | Route::MyWallets
            | Route::GetTransfer
            | Route::GetPayment
            | Route::GetMedCard
            | Route::MedCardSpend
            | Route::MedCardClaims
            | Route::GetClaim
            | Route::PharmacyClaims
            | Route::MyClaims
            | Route::GetInsuranceClaim
            | Route::Health => "GET",
            Route::RemoveBeneficiary => "DELETE",
            _ => "POST",
        }
    }

    /// The path template, in API Gateway's (and axum's) `{param}` syntax.
    pub fn path(self) -> &'static str {
        match self {
            Route::CreateWallet => "/api/v2/commands/wallets/create",
            Route::ActivateWallet => "/api/v2/commands/wallets/{walletId}/activate",
            Route::SuspendWallet => "/api/v2/commands/wallets/{walletId}/suspend",
            Route::CloseWallet => "/api/v2/commands/wallets/{walletId}/close",
            Route::CreditWallet => "/api/v2/commands/wallets/{walletId}/credit",
            Route::DebitWallet => "/api/v2/commands/wallets/{walletId}/debit",
            Route::CreateTransfer => "/api/v2/commands/transfers",
            Route::GetWallet => "/api/v2/wallets/{walletId}",
            Route::ListTransactions => "/api/v2/wallets/{walletId}/transactions",
            Route::GetBalance => "/api/v2/wallets/{walletId}/balance",
            Route::MyWallets => "/api/v2/users/me/wallets",
            Route::GetTransfer => "/api/v2/transfers/{transferId}",
            Route::AuthorizePayment => "/api/v2/commands/payments",
            Route::CapturePayment => "/api/v2/commands/payments/{paymentId}/capture",
            Route::VoidPayment => "/api/v2/commands/payments/{paymentId}/void",
            Route::RefundPayment => "/api/v2/commands/payments/{paymentId}/refund",
            Route::GetPayment => "/api/v2/payments/{paymentId}",
            Route::IssueMedCard => "/api/v2/commands/medcards",
            Route::ActivateMedCard => "/api/v2/commands/medcards/{medcardId}/activate",
            Route::SuspendMedCard => "/api/v2/commands/medcards/{medcardId}/suspend",
            Route::ExpireMedCard => "/api/v2/commands/medcards/{medcardId}/expire",
            Route::AddBeneficiary => "/api/v2/commands/medcards/{medcardId}/beneficiaries",
            Route::RemoveBeneficiary => "/api/v2/commands/medcards/{medcardId}/beneficiaries/{beneficiaryId}",
            Route::ChangeMedCardLimit => "/api/v2/commands/medcards/{medcardId}/limit",
            Route::GetMedCard => "/api/v2/medcards/{medcardId}",
            Route::MedCardSpend => "/api/v2/medcards/{medcardId}/spend",
            Route::MedCardClaims => "/api/v2/medcards/{medcardId}/claims",
            Route::SubmitPrescriptionClaim => "/api/v2/commands/claims/prescriptions",
            Route::GetClaim => "/api/v2/claims/{claimId}",
            Route::PharmacyClaims => "/api/v2/pharmacies/{pharmacyWalletId}/claims",
            Route::MyClaims => "/api/v2/users/me/claims",
            Route::SubmitInsuranceClaim => "/api/v2/commands/insurance-claims",
            Route::ApproveInsuranceClaim => "/api/v2/commands/insurance-claims/{claimId}/approve",
            Route::RejectInsuranceClaim => "/api/v2/commands/insurance-claims/{claimId}/reject",
            Route::GetInsuranceClaim => "/api/v2/insurance-claims/{claimId}",
            Route::Health => "/health",
        }
    }

    /// The name in metrics and logs (`wallet.debit`).
    pub fn name(self) -> &'static str {
        match self {
            Route::CreateWallet => "wallet.create",
            Route::ActivateWallet => "wallet.activate",
            Route::SuspendWallet => "wallet.suspend",
            Route::CloseWallet => "wallet.close",
            Route::CreditWallet => "wallet.credit",
            Route::DebitWallet => "wallet.debit",
            Route::CreateTransfer => "transfer.create",
            Route::GetWallet => "wallet.get",
            Route::ListTransactions => "wallet.transactions",
            Route::GetBalance => "wallet.balance",
            Route::MyWallets => "user.wallets",
            Route::GetTransfer => "transfer.get",
            Route::AuthorizePayment => "payment.authorize",
            Route::CapturePayment => "payment.capture",
            Route::VoidPayment => "payment.void",
            Route::RefundPayment => "payment.refund",
            Route::GetPayment => "payment.get",
            Route::IssueMedCard => "medcard.issue",
            Route::ActivateMedCard => "medcard.activate",
            Route::SuspendMedCard => "medcard.suspend",
            Route::ExpireMedCard => "medcard.expire",
            Route::AddBeneficiary => "medcard.beneficiary-add",
            Route::RemoveBeneficiary => "medcard.beneficiary-remove",
            Route::ChangeMedCardLimit => "medcard.limit",
            Route::GetMedCard => "medcard.get",
            Route::MedCardSpend => "medcard.spend",
            Route::MedCardClaims => "medcard.claims",
            Route::SubmitPrescriptionClaim => "claim.submit",
            Route::GetClaim => "claim.get",
            Route::PharmacyClaims => "pharmacy.claims",
            Route::MyClaims => "user.claims",
            Route::SubmitInsuranceClaim => "insurance-claim.submit",
            Route::ApproveInsuranceClaim => "insurance-claim.approve",
            Route::RejectInsuranceClaim => "insurance-claim.reject",
            Route::GetInsuranceClaim => "insurance-claim.get",
            Route::Health => "health",
        }
    }

    pub fn is_command(self) -> bool {
        self.method() != "GET"
    }

    /// Whether the route needs a caller (everything but the health check).
    pub fn needs_caller(self) -> bool {
        self != Route::Health
    }
}
