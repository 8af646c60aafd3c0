//! The OpenAPI 3.1 document of the HTTP API, generated from the code.
//!
//! Paths, methods and operation ids come from the route table (`routes.rs`); each
//! route's contract below names its request body, its answer and its query
//! parameters by their Rust types (the `*Body` structs the handlers parse, the
//! `*Reply` structs they serialise), so the document cannot drift from the handlers:
//! a new route does not compile until it has a contract here. `docs/openapi.json` is
//! this document, committed (a test holds the two equal); `healthpay openapi`
//! writes it, and the local server serves it at `GET /openapi.json`.

use crate::error::ErrorBody;
use crate::routes::{Access, Route};
use crate::{claims, fraud, graphql, medcards, payments, queries, transfers, wallets, HealthReply};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::info::{InfoBuilder, LicenseBuilder};
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ComponentsBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{ContentBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref, RefOr, Required, Response, ResponseBuilder, Schema};
use utoipa::ToSchema;

/// The name of the bearer (JWT) security scheme.
pub const BEARER: &str = "bearerAuth";

/// What the document says of one route, beyond its method and path.
struct Contract {
    tag: &'static str,
    summary: &'static str,
    /// Who may call it, beyond what [`Access`] says.
    who: &'static str,
    body: Option<RequestBody>,
    /// The success status and its body.
    ok: u16,
    reply: RefOr<Schema>,
    /// Whether the success answer has a `Location` header.
    location: bool,
    query: Vec<Query>,
    /// Whether a body names other aggregates (wallets, cards) that may not exist: 404.
    names_others: bool,
}

struct RequestBody {
    schema: RefOr<Schema>,
    required: bool,
}

struct Query {
    name: &'static str,
    description: &'static str,
    schema: ObjectBuilder,
}

/// The schemas the document refers to, collected as the contracts name them.
#[derive(Default)]
struct Schemas(Vec<(String, RefOr<Schema>)>);

impl Schemas {
    /// A reference to `T`'s schema, which (with those it refers to) goes into the components.
    fn of<T: ToSchema>(&mut self) -> RefOr<Schema> {
        self.0.push((T::name().into_owned(), T::schema()));
        T::schemas(&mut self.0);
        RefOr::Ref(Ref::from_schema_name(T::name()))
    }

    fn body<T: ToSchema>(&mut self) -> Option<RequestBody> {
        Some(RequestBody { schema: self.of::<T>(), required: true })
    }

    fn optional_body<T: ToSchema>(&mut self) -> Option<RequestBody> {
        Some(RequestBody { schema: self.of::<T>(), required: false })
    }
}

fn limit() -> Query {
    Query {
        name: "limit",
        description: "Page size: 1 to 200 (default 50).",
        schema: ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)).maximum(Some(crate::queries::MAX_PAGE as u64)),
    }
}

fn cursor() -> Query {
    Query { name: "cursor", description: "The `nextCursor` of the previous page (opaque).", schema: ObjectBuilder::new().schema_type(Type::String) }
}

fn contract(route: Route, s: &mut Schemas) -> Contract {
    use Route::*;
    let c = |tag, summary, who, body, ok, reply| Contract { tag, summary, who, body, ok, reply, location: false, query: vec![], names_others: false };
    match route {
        CreateWallet => c(
            "wallets",
            "Create a wallet (pending)",
            "The caller becomes its owner.",
            s.body::<wallets::CreateWalletBody>(),
            201,
            s.of::<wallets::WalletCommandReply>(),
        ),
        ActivateWallet => c(
            "wallets",
            "Activate a wallet",
            "The owner (pending → active); lifting a suspension is admin only.",
            None,
            200,
            s.of::<wallets::WalletCommandReply>(),
        ),
        SuspendWallet => c("wallets", "Suspend a wallet", "admin only.", s.body::<wallets::SuspendWalletBody>(), 200, s.of::<wallets::WalletCommandReply>()),
        CloseWallet => c(
            "wallets",
            "Close a wallet (zero balance, no open holds)",
            "The owner or admin.",
            s.optional_body::<wallets::CloseWalletBody>(),
            200,
            s.of::<wallets::WalletCommandReply>(),
        ),
        CreditWallet => c("wallets", "Credit a wallet", "The owner or admin.", s.body::<wallets::CreditBody>(), 200, s.of::<wallets::WalletCommandReply>()),
        DebitWallet => c("wallets", "Debit a wallet", "The owner or admin.", s.body::<wallets::DebitBody>(), 200, s.of::<wallets::WalletCommandReply>()),
        CreateTransfer => Contract {
            location: true,
            names_others: true,
            ..c(
                "transfers",
                "Start a transfer (a saga: debit, credit, or refund)",
                "The source wallet's owner or admin.",
                s.body::<transfers::TransferBody>(),
                202,
                s.of::<transfers::TransferAccepted>(),
            )
        },
        GetWallet => c("wallets", "A wallet", "The owner or admin.", None, 200, s.of::<queries::WalletReply>()),
        ListTransactions => Contract {
            query: vec![limit(), cursor()],
            ..c("wallets", "A wallet's history, newest first", "The owner or admin.", None, 200, s.of::<queries::TransactionPage>())
        },
        GetBalance => Contract {
            query: vec![Query {
                name: "asOf",
                description: "The time (RFC 3339) at which to fold the balance; now if absent. Before the wallet existed: 404.",
                schema: ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
            }],
            ..c("wallets", "A wallet's balance at a time, from the event store", "The owner or admin.", None, 200, s.of::<queries::BalanceReply>())
        },
        MyWallets => c("users", "The caller's wallets", "Any caller, for itself.", None, 200, s.of::<queries::WalletList>()),
        GetTransfer => c("transfers", "A transfer", "The source's owner, the destination's owner, admin.", None, 200, s.of::<queries::TransferReply>()),
        AuthorizePayment => Contract {
            location: true,
            names_others: true,
            ..c(
                "payments",
                "Authorise a payment (hold the amount on the payer)",
                "The payer wallet's owner or admin.",
                s.body::<payments::AuthorizePaymentBody>(),
                201,
                s.of::<payments::PaymentCommandReply>(),
            )
        },
        CapturePayment => c(
            "payments",
            "Capture a payment (all or part of the hold goes to the merchant)",
            "The merchant wallet's owner or admin.",
            s.optional_body::<payments::CapturePaymentBody>(),
            200,
            s.of::<payments::PaymentCommandReply>(),
        ),
        VoidPayment => c(
            "payments",
            "Void a payment (release the hold)",
            "The merchant wallet's owner or admin. A body is ignored.",
            None,
            200,
            s.of::<payments::PaymentCommandReply>(),
        ),
        RefundPayment => c(
            "payments",
            "Refund a captured payment, in full or in part",
            "The merchant wallet's owner or admin.",
            s.body::<payments::RefundPaymentBody>(),
            200,
            s.of::<payments::PaymentCommandReply>(),
        ),
        GetPayment => c("payments", "A payment", "The payer's owner, the merchant's owner, admin.", None, 200, s.of::<payments::PaymentReply>()),
        IssueMedCard => Contract {
            location: true,
            names_others: true,
            ..c(
                "medcards",
                "Issue a medical card (ISSUED)",
                "An insurer owning the sponsor wallet, or admin.",
                s.body::<medcards::IssueMedCardBody>(),
                201,
                s.of::<medcards::MedCardCommandReply>(),
            )
        },
        ActivateMedCard => c("medcards", "Activate a card", "The sponsoring insurer or admin.", None, 200, s.of::<medcards::MedCardCommandReply>()),
        SuspendMedCard => c(
            "medcards",
            "Suspend a card",
            "The sponsoring insurer or admin.",
            s.body::<medcards::SuspendMedCardBody>(),
            200,
            s.of::<medcards::MedCardCommandReply>(),
        ),
        ExpireMedCard => c("medcards", "Expire a card", "The sponsoring insurer or admin.", None, 200, s.of::<medcards::MedCardCommandReply>()),
        AddBeneficiary => c(
            "medcards",
            "Add a beneficiary to a card (at most 50)",
            "The sponsoring insurer, the holder, admin.",
            s.body::<medcards::BeneficiaryBody>(),
            200,
            s.of::<medcards::MedCardCommandReply>(),
        ),
        RemoveBeneficiary => {
            c("medcards", "Remove a beneficiary from a card", "The sponsoring insurer, the holder, admin.", None, 200, s.of::<medcards::MedCardCommandReply>())
        }
        ChangeMedCardLimit => c(
            "medcards",
            "Change a card's monthly limit",
            "The sponsoring insurer or admin.",
            s.body::<medcards::MedCardLimitBody>(),
            200,
            s.of::<medcards::MedCardCommandReply>(),
        ),
        GetMedCard => c("medcards", "A medical card", "The holder, the sponsoring insurer, admin.", None, 200, s.of::<medcards::MedCardReply>()),
        MedCardSpend => Contract {
            query: vec![Query {
                name: "month",
                description: "`YYYY-MM`; the current month (UTC) if absent.",
                schema: ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[0-9]{4}-(0[1-9]|1[0-2])$")),
            }],
            ..c("medcards", "A card's use of a month's limit", "The holder, the sponsoring insurer, admin.", None, 200, s.of::<medcards::MedCardSpendReply>())
        },
        MedCardClaims => Contract {
            query: vec![limit(), cursor()],
            ..c("claims", "The claims made on a card, newest first", "The holder, the sponsoring insurer, admin.", None, 200, s.of::<claims::ClaimPage>())
        },
        SubmitPrescriptionClaim => Contract {
            location: true,
            names_others: true,
            ..c(
                "claims",
                "File a prescription claim (a saga prices, reserves, debits and pays it)",
                "A pharmacy owning the pharmacy wallet, or admin; the copayment only from the card holder's wallet.",
                s.body::<claims::PrescriptionBody>(),
                202,
                s.of::<claims::ClaimAccepted>(),
            )
        },
        GetClaim => c(
            "claims",
            "A prescription claim",
            "The pharmacy that filed it, the card holder, the sponsoring insurer, admin.",
            None,
            200,
            s.of::<claims::ClaimReply>(),
        ),
        PharmacyClaims => Contract {
            query: vec![limit(), cursor()],
            ..c("claims", "A pharmacy's claims, newest first", "The pharmacy wallet's owner or admin.", None, 200, s.of::<claims::ClaimPage>())
        },
        MyClaims => Contract {
            query: vec![limit(), cursor()],
            ..c("users", "The claims made on the caller's cards, newest first", "Any caller, as a card holder.", None, 200, s.of::<claims::ClaimPage>())
        },
        SubmitInsuranceClaim => Contract {
            location: true,
            names_others: true,
            ..c(
                "insurance-claims",
                "Submit an insurance claim against an active card",
                "The provider wallet's owner or admin.",
                s.body::<claims::InsuranceClaimBody>(),
                201,
                s.of::<claims::InsuranceClaimCommandReply>(),
            )
        },
        ApproveInsuranceClaim => c(
            "insurance-claims",
            "Approve an insurance claim and settle it (the sponsor pays the provider)",
            "The sponsoring insurer or admin.",
            s.optional_body::<claims::ApproveInsuranceClaimBody>(),
            200,
            s.of::<claims::InsuranceClaimCommandReply>(),
        ),
        RejectInsuranceClaim => c(
            "insurance-claims",
            "Reject an insurance claim",
            "The sponsoring insurer or admin.",
            s.body::<claims::RejectInsuranceClaimBody>(),
            200,
            s.of::<claims::InsuranceClaimCommandReply>(),
        ),
        GetInsuranceClaim => c(
            "insurance-claims",
            "An insurance claim",
            "The provider, the card holder, the sponsoring insurer, admin.",
            None,
            200,
            s.of::<claims::InsuranceClaimReply>(),
        ),
        FraudAlerts => Contract {
            query: vec![
                Query {
                    name: "walletId",
                    description: "Only this wallet's alerts.",
                    schema: ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
                },
                Query {
                    name: "status",
                    description: "Only alerts in this status (OPEN or RESOLVED, any case).",
                    schema: ObjectBuilder::new().schema_type(Type::String).pattern(Some("^(OPEN|RESOLVED|open|resolved)$")),
                },
                limit(),
                cursor(),
            ],
            ..c("fraud", "Fraud alerts, newest first", "admin only.", None, 200, s.of::<fraud::FraudAlertPage>())
        },
        GetFraudAlert => c("fraud", "A fraud alert", "admin only.", None, 200, s.of::<fraud::FraudAlertReply>()),
        ResolveFraudAlert => c(
            "fraud",
            "Resolve an open fraud alert (it does not lift a suspension: activate the wallet for that)",
            "admin only.",
            s.body::<fraud::ResolveFraudAlertBody>(),
            200,
            s.of::<fraud::FraudAlertCommandReply>(),
        ),
        GraphQL => c(
            "graphql",
            "Queries and mutations (GraphQL over HTTP; the schema is docs/schema.graphql)",
            "Each field as its REST route's access says; a refused field is an error whose extensions.code is FORBIDDEN. With an Idempotency-Key, send one mutation per request.",
            s.body::<graphql::GraphqlRequest>(),
            200,
            s.of::<graphql::GraphqlReply>(),
        ),
        Health => c("health", "Whether the service and each of its components are healthy", "Anyone: no token.", None, 200, s.of::<HealthReply>()),
    }
}

/// The statuses a route may answer besides its success, and why.
fn failures(route: Route, contract: &Contract) -> Vec<(u16, &'static str)> {
    if route == Route::Health {
        return vec![
            (400, "VALIDATION_ERROR: a request body over 1 MB."),
            (408, "REQUEST_TIMEOUT (local server): the request body did not arrive in time."),
            (503, "A component is unhealthy (the body says which)."),
        ];
    }
    if route == Route::GraphQL {
        // Everything past the request's shape is a 200 whose errors carry the code.
        return vec![
            (400, "VALIDATION_ERROR: the body is not one GraphQL request object."),
            (401, "UNAUTHENTICATED: no bearer token, or one that is invalid or expired."),
            (408, "REQUEST_TIMEOUT (local server): the request body did not arrive in time."),
            (429, "RATE_LIMITED: over the caller's limit for queries (the request spends one; each mutation in it also spends a command token, and one over that limit is an error with extensions.code RATE_LIMITED); Retry-After says when to retry."),
            (500, "INTERNAL: the request may be retried (with the same Idempotency-Key)."),
        ];
    }
    let mut failures = vec![(400, "VALIDATION_ERROR: a malformed id, query parameter, header or body.")];
    failures.push((401, "UNAUTHENTICATED: no bearer token, or one that is invalid or expired."));
    if route.access() != Access::Caller {
        failures.push((403, "FORBIDDEN: the caller may not do this (checked before any business rule)."));
    }
    if route.path().contains('{') || contract.names_others {
        failures.push((404, "NOT_FOUND: the resource (or one the body names) does not exist."));
    }
    failures.push((408, "REQUEST_TIMEOUT (local server): the request body did not arrive in time."));
    if route.is_command() {
        failures.push((409, "CONCURRENCY_CONFLICT (retry the request) or ALREADY_EXISTS."));
        failures.push((
            422,
            "A business rule refused the command (INSUFFICIENT_FUNDS, WALLET_NOT_ACTIVE, INVALID_STATE_TRANSITION, …), or IDEMPOTENCY_KEY_REUSED.",
        ));
    }
    failures.push((429, "RATE_LIMITED: over the caller's limit for commands (or for queries); the Retry-After header says in how many seconds to retry (with the same Idempotency-Key: a 429 is never stored)."));
    failures.push((500, "INTERNAL: the request may be retried (with the same Idempotency-Key)."));
    failures
}

/// What a client (or a fuzzer's stateful phase) can do next with the ids a success
/// answer carries: OpenAPI links from this route to others, `(target, [(parameter, expression)])`.
fn links(route: Route) -> Vec<(Route, Vec<(&'static str, &'static str)>)> {
    use Route::*;
    let to = |targets: &[Route], params: Vec<(&'static str, &'static str)>| targets.iter().map(|&t| (t, params.clone())).collect::<Vec<_>>();
    const WALLET: &[Route] = &[ActivateWallet, SuspendWallet, CloseWallet, CreditWallet, DebitWallet, GetWallet, ListTransactions, GetBalance];
    const PAYMENT: &[Route] = &[CapturePayment, VoidPayment, RefundPayment, GetPayment];
    const CARD: &[Route] = &[ActivateMedCard, SuspendMedCard, ExpireMedCard, AddBeneficiary, ChangeMedCardLimit, GetMedCard, MedCardSpend, MedCardClaims];
    const INSURANCE: &[Route] = &[ApproveInsuranceClaim, RejectInsuranceClaim, GetInsuranceClaim];
    match route {
        CreateWallet | ActivateWallet | SuspendWallet | CloseWallet | CreditWallet | DebitWallet => {
            let mut links = to(WALLET, vec![("walletId", "$response.body#/walletId")]);
            links.extend(to(&[PharmacyClaims], vec![("pharmacyWalletId", "$response.body#/walletId")]));
            links
        }
        AuthorizePayment | CapturePayment | VoidPayment | RefundPayment => to(PAYMENT, vec![("paymentId", "$response.body#/paymentId")]),
        CreateTransfer => to(&[GetTransfer], vec![("transferId", "$response.body#/transferId")]),
        IssueMedCard | ActivateMedCard | SuspendMedCard | ExpireMedCard | ChangeMedCardLimit | RemoveBeneficiary => {
            to(CARD, vec![("medcardId", "$response.body#/medcardId")])
        }
        AddBeneficiary => {
            let mut links = to(CARD, vec![("medcardId", "$response.body#/medcardId")]);
            links.extend(to(&[RemoveBeneficiary], vec![("medcardId", "$response.body#/medcardId"), ("beneficiaryId", "$request.body#/beneficiaryId")]));
            links
        }
        SubmitPrescriptionClaim => to(&[GetClaim], vec![("claimId", "$response.body#/claimId")]),
        SubmitInsuranceClaim | ApproveInsuranceClaim | RejectInsuranceClaim => to(INSURANCE, vec![("claimId", "$response.body#/claimId")]),
        _ => vec![],
    }
}

fn correlation_header() -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .description(Some("The request's correlation id (X-Correlation-Id as sent, or generated)."))
        .build()
}

fn json_response(description: &str, schema: RefOr<Schema>) -> ResponseBuilder {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", ContentBuilder::new().schema(Some(schema)).build())
        .header("X-Correlation-Id", correlation_header())
}

fn string_param(name: &str, location: ParameterIn, description: &str, schema: ObjectBuilder, required: bool) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(location)
        .required(if required { Required::True } else { Required::False })
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

/// The path parameters of a route's path template, in order (`{walletId}` …).
pub fn path_parameters(path: &str) -> Vec<&str> {
    path.split('{').skip(1).filter_map(|rest| rest.split_once('}').map(|(name, _)| name)).collect()
}

/// The operation id of a route: its variant's name, lower camel case (`createWallet`).
pub fn operation_id(route: Route) -> String {
    let name = format!("{route:?}");
    let mut chars = name.chars();
    chars.next().map(|c| c.to_ascii_lowercase().to_string() + chars.as_str()).unwrap_or_default()
}

fn operation(route: Route, contract: Contract, error: &RefOr<Schema>) -> utoipa::openapi::path::Operation {
    let failures = failures(route, &contract);
    let who = match route.access() {
        Access::Public => "No token needed.".to_string(),
        Access::Caller => format!("Any authenticated caller. {}", contract.who),
        Access::Party => format!("Who may: {}", contract.who),
        Access::PartyWithRole(role) => format!("Who may (role `{}`): {}", role.as_str(), contract.who),
        Access::Admin => format!("Who may: {}", contract.who),
    };
    let mut op = OperationBuilder::new()
        .operation_id(Some(operation_id(route)))
        .summary(Some(contract.summary))
        .description(Some(format!("{who}\n\nRoute `{}` (Lambda function `{}`).", route.name(), route.binary())))
        .tag(contract.tag);
    for name in path_parameters(route.path()) {
        let schema = ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)));
        op = op.parameter(string_param(name, ParameterIn::Path, "A UUID.", schema, true));
    }
    for query in contract.query {
        op = op.parameter(string_param(query.name, ParameterIn::Query, query.description, query.schema, false));
    }
    if route.is_command() {
        op = op.parameter(string_param(
            "Idempotency-Key",
            ParameterIn::Header,
            "A retry with the same key and body answers the first answer again and changes nothing (alias: X-Request-ID). 1 to 255 visible ASCII characters; scoped to the caller, kept 24 hours.",
            ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[!-~]{1,255}$")),
            false,
        ));
    }
    if let Some(body) = contract.body {
        op = op.request_body(Some(
            RequestBodyBuilder::new()
                .content("application/json", ContentBuilder::new().schema(Some(body.schema)).build())
                .required(Some(if body.required { Required::True } else { Required::False }))
                .build(),
        ));
    }
    let mut ok = json_response(if route == Route::Health { "Healthy." } else { "Done." }, contract.reply);
    if contract.location {
        ok = ok.header(
            "Location",
            HeaderBuilder::new().schema(Some(ObjectBuilder::new().schema_type(Type::String))).description(Some("Where to read it.")).build(),
        );
    }
    if route.is_command() {
        ok = ok.header(
            "Idempotent-Replayed",
            HeaderBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["true"]))))
                .description(Some("`true` when this is the stored answer to an earlier request with the same Idempotency-Key."))
                .build(),
        );
    }
    for (target, params) in links(route) {
        let mut link = LinkBuilder::new().operation_id(operation_id(target));
        for (name, expression) in params {
            link = link.parameter(name, expression);
        }
        ok = ok.link(operation_id(target), link.build());
    }
    op = op.response(contract.ok.to_string(), ok.build());
    let health = route == Route::Health;
    for (status, description) in failures {
        let schema = if health && status == 503 { RefOr::Ref(Ref::from_schema_name(HealthReply::name())) } else { error.clone() };
        let response: Response =
            ResponseBuilder::new().description(description).content("application/json", ContentBuilder::new().schema(Some(schema)).build()).build();
        op = op.response(status.to_string(), response);
    }
    op = if route.needs_caller() { op.security(SecurityRequirement::new(BEARER, Vec::<String>::new())) } else { op.securities(Some(Vec::new())) };
    op.build()
}

/// The whole document.
pub fn document() -> OpenApi {
    let mut schemas = Schemas::default();
    let error = schemas.of::<ErrorBody>();
    let mut paths = PathsBuilder::new();
    for &route in Route::ALL {
        let contract = contract(route, &mut schemas);
        let method = match route.method() {
            "GET" => HttpMethod::Get,
            "POST" => HttpMethod::Post,
            "DELETE" => HttpMethod::Delete,
            other => unreachable!("a route with method {other}: add it here"),
        };
        paths = paths.path(route.path(), PathItem::new(method, operation(route, contract, &error)));
    }
    let mut components = ComponentsBuilder::new()
        .security_scheme(BEARER, SecurityScheme::Http(Http::builder().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").description(Some(
            "An HS256 JWT: `sub` is the caller, `roles` a list of admin, pharmacy, insurer. On AWS the API Gateway authorizer checks it; locally `healthpay token` mints one.",
        )).build()));
    for (name, schema) in schemas.0 {
        components = components.schema(name, schema);
    }
    let tags = [
        ("wallets", "Wallet commands and the wallet read side."),
        ("transfers", "Transfers between wallets (a saga)."),
        ("payments", "Card-style payments: authorise, capture, void, refund."),
        ("medcards", "Medical cards: issue, manage, read."),
        ("claims", "Prescription claims (a saga)."),
        ("insurance-claims", "A provider's claims on a card's sponsor."),
        ("fraud", "Alerts the fraud detector raised, for operators."),
        ("users", "The caller's own lists."),
        ("health", "Liveness of the service and its components."),
    ];
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("HealthPay Ledger API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "The HTTP API of HealthPay Ledger, an event-sourced payments ledger for healthcare. Generated from the code (`healthpay openapi`); the prose contract, with every rule, is docs/API.md.\n\nJSON in, JSON out. Amounts are JSON numbers in major units with at most 2 decimals. Every route but `/health` needs `Authorization: Bearer <JWT>`. Every error has the `ErrorBody` shape.",
                ))
                .license(Some(LicenseBuilder::new().name("Apache-2.0").identifier(Some("Apache-2.0")).build()))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components.build()))
        .tags(Some(tags.map(|(name, description)| TagBuilder::new().name(name).description(Some(description)).build())))
        .build()
}

/// The document as committed in `docs/openapi.json`: pretty JSON, ending with a newline.
pub fn to_json() -> String {
    let mut json = serde_json::to_string_pretty(&document()).expect("the document serialises");
    json.push('\n');
    json
}

/// The document in the OpenAPI 3.0 dialect, for an import into API Gateway (REST
/// APIs import OpenAPI 2.0 and 3.0, not 3.1): `nullable` instead of `null` types,
/// boolean `exclusiveMinimum`, one `example` per schema, bare `$ref`s, no links and no
/// `propertyNames`. Same
/// paths (API Gateway's `{param}` syntax), operations, parameters and schemas.
pub fn api_gateway_document() -> serde_json::Value {
    use serde_json::Value;
    fn downgrade(value: &mut Value) {
        match value {
            Value::Array(items) => items.iter_mut().for_each(downgrade),
            Value::Object(map) => {
                map.values_mut().for_each(downgrade);
                map.remove("links");
                map.remove("propertyNames");
                // `{"type": ["string", "null"]}` → `{"type": "string", "nullable": true}`
                if let Some(Value::Array(types)) = map.get("type") {
                    let others: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
                    if others.len() < types.len() {
                        map.insert("nullable".into(), Value::Bool(true));
                    }
                    if let [only] = others.as_slice() {
                        map.insert("type".into(), only.clone());
                    }
                }
                // `{"oneOf": [X, {"type": "null"}]}` → X, nullable
                if let Some(Value::Array(choices)) = map.get("oneOf") {
                    let null = serde_json::json!({"type": "null"});
                    if choices.len() == 2 && choices.contains(&null) {
                        let mut other = choices.iter().find(|c| **c != null).cloned().expect("two choices");
                        map.remove("oneOf");
                        if let Some(reference) = other.get("$ref").cloned() {
                            other = serde_json::json!({"allOf": [{"$ref": reference}]});
                        }
                        if let Value::Object(other) = other {
                            map.extend(other);
                        }
                        map.insert("nullable".into(), Value::Bool(true));
                    }
                }
                // A `$ref` has no siblings in 3.0.
                if map.contains_key("$ref") {
                    map.retain(|key, _| key == "$ref");
                }
                if let Some(bound) = map.get("exclusiveMinimum").filter(|b| b.is_number()).cloned() {
                    map.insert("minimum".into(), bound);
                    map.insert("exclusiveMinimum".into(), Value::Bool(true));
                }
                if let Some(Value::Array(examples)) = map.get("examples") {
                    if let Some(first) = examples.first().cloned() {
                        map.insert("example".into(), first);
                    }
                    map.remove("examples");
                }
            }
            _ => {}
        }
    }
    let mut document = serde_json::to_value(document()).expect("the document serialises");
    downgrade(&mut document);
    document["openapi"] = "3.0.3".into();
    if let Some(license) = document["info"]["license"].as_object_mut() {
        license.remove("identifier");
    }
    document
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn the_committed_document_is_the_generated_one() {
        crate::assert_committed("docs/openapi.json", &to_json(), "HEALTHPAY_BLESS_OPENAPI", "openapi --out docs/openapi.json", "openapi");
    }

    #[test]
    fn every_route_of_the_table_is_an_operation_with_its_parameters_and_security() {
        let doc: Value = serde_json::from_str(&to_json()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut operations = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            operations += item.as_object().unwrap().len();
            assert!(Route::ALL.iter().any(|r| r.path() == path), "{path} is in no route");
        }
        assert_eq!(operations, Route::ALL.len(), "one operation per route");
        for &route in Route::ALL {
            let op = &doc["paths"][route.path()][route.method().to_ascii_lowercase()];
            assert_eq!(op["operationId"], operation_id(route), "{route:?}");
            let params: Vec<&str> =
                op["parameters"].as_array().into_iter().flatten().filter(|p| p["in"] == "path").map(|p| p["name"].as_str().unwrap()).collect();
            assert_eq!(params, path_parameters(route.path()), "{route:?}: path parameters");
            let security = op["security"].as_array().unwrap();
            if route.needs_caller() {
                assert_eq!(security, &vec![serde_json::json!({BEARER: []})], "{route:?}");
                assert!(op["responses"]["401"].is_object(), "{route:?} documents 401");
            } else {
                assert!(security.is_empty(), "{route:?} is public");
            }
            let success =
                if route.is_command() { ["200", "201", "202"].iter().any(|s| op["responses"][s].is_object()) } else { op["responses"]["200"].is_object() };
            assert!(success, "{route:?} documents its success");
            if route.needs_caller() {
                for status in ["400", "401", "429", "500"] {
                    assert_eq!(
                        op["responses"][status]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorBody",
                        "{route:?} {status}"
                    );
                }
            }
        }
    }

    #[test]
    fn links_fill_the_path_parameters_of_their_target_from_what_the_answer_carries() {
        for &route in Route::ALL {
            for (target, params) in links(route) {
                let mut names: Vec<&str> = params.iter().map(|(name, _)| *name).collect();
                names.sort();
                let mut wanted = path_parameters(target.path());
                wanted.sort();
                assert_eq!(names, wanted, "{route:?} → {target:?}");
            }
        }
    }

    /// What API Gateway's importer would refuse or misread: OpenAPI 3.1 constructs.
    #[test]
    fn the_api_gateway_variant_is_openapi_3_0() {
        fn check(path: &str, value: &Value) {
            match value {
                Value::Object(map) => {
                    assert!(!map.get("type").is_some_and(|t| t.is_array() || t == "null"), "{path}: a 3.1 type {map:?}");
                    assert!(!map.get("exclusiveMinimum").is_some_and(Value::is_number), "{path}: numeric exclusiveMinimum");
                    assert!(!map.contains_key("links") && !map.contains_key("propertyNames"), "{path}: links or propertyNames");
                    if map.contains_key("$ref") {
                        assert_eq!(map.len(), 1, "{path}: $ref with siblings");
                    }
                    if map.contains_key("type") || map.contains_key("$ref") {
                        assert!(!map.contains_key("examples"), "{path}: examples in a schema");
                    }
                    map.iter().for_each(|(k, v)| check(&format!("{path}/{k}"), v));
                }
                Value::Array(items) => items.iter().enumerate().for_each(|(i, v)| check(&format!("{path}/{i}"), v)),
                _ => {}
            }
        }
        let doc = api_gateway_document();
        assert_eq!(doc["openapi"], "3.0.3");
        check("", &doc);
        let full: Value = serde_json::from_str(&to_json()).unwrap();
        assert_eq!(doc["paths"].as_object().unwrap().keys().collect::<Vec<_>>(), full["paths"].as_object().unwrap().keys().collect::<Vec<_>>());
        let claim = &doc["components"]["schemas"]["ClaimReply"]["properties"];
        assert_eq!(claim["coveredAmount"], serde_json::json!({"allOf": [{"$ref": "#/components/schemas/Money"}], "nullable": true}));
        assert_eq!(claim["rejectionReason"]["nullable"], true);
        assert_eq!(doc["components"]["schemas"]["Amount"]["exclusiveMinimum"], true);
    }

    /// Every `$ref` names a schema of the components.
    #[test]
    fn every_reference_resolves() {
        fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(r)) = map.get("$ref") {
                        found.push(r);
                    }
                    map.values().for_each(|v| refs(v, found));
                }
                Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
                _ => {}
            }
        }
        let doc: Value = serde_json::from_str(&to_json()).unwrap();
        let mut found = vec![];
        refs(&doc, &mut found);
        assert!(!found.is_empty());
        for r in found {
            let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{r}: only schema references"));
            assert!(doc["components"]["schemas"][name].is_object(), "{r} does not resolve");
        }
    }
}
