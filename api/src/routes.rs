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
    Health,
}

impl Route {
    pub const ALL: [Route; 13] = [
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
        Route::Health,
    ];

    pub fn method(self) -> &'static str {
        match self {
            Route::GetWallet | Route::ListTransactions | Route::GetBalance | Route::MyWallets | Route::GetTransfer | Route::Health => "GET",
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
            Route::Health => "health",
        }
    }

    pub fn is_command(self) -> bool {
        self.method() == "POST"
    }

    /// Whether the route needs a caller (everything but the health check).
    pub fn needs_caller(self) -> bool {
        self != Route::Health
    }
}
