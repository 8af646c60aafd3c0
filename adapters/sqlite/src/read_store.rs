//! Read models (wallet views, transaction history, transfer views, documents) and
//! feed checkpoints on SQLite. Every view is stored as JSON next to the columns the
//! queries and the version guard need.

use crate::common::{corrupt, from_sql_int, in_write_transaction, sql_limit, time_key, to_sql_int, Db, OrStore, Synchronous};
use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};
use shared::ports::{
    Checkpoints, Document, DocumentViews, ListedPage, Listing, ReadBatches, ReadWrite, Saved, StoreError, TransactionHistory, TransactionItem, TransferView,
    TransferViews, WalletView, WalletViews,
};
use std::path::Path;
use uuid::Uuid;

/// Ids bound to one `IN (…)` of a batched wallet read (SQLite allows 32,766 parameters).
const WALLETS_PER_STATEMENT: usize = 500;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS wallet_views (
    wallet_id  TEXT    PRIMARY KEY,
    owner_id   TEXT    NOT NULL,
    created_at TEXT    NOT NULL, -- sortable, see time_key
    version    INTEGER NOT NULL,
    view       TEXT    NOT NULL  -- the WalletView as JSON
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS wallet_views_by_owner ON wallet_views (owner_id, created_at, wallet_id);
CREATE TABLE IF NOT EXISTS transactions (
    wallet_id TEXT    NOT NULL,
    version   INTEGER NOT NULL,
    item      TEXT    NOT NULL, -- the TransactionItem as JSON
    PRIMARY KEY (wallet_id, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS transfer_views (
    transfer_id TEXT    PRIMARY KEY,
    version     INTEGER NOT NULL,
    view        TEXT    NOT NULL -- the TransferView as JSON
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS documents (
    kind     TEXT    NOT NULL,
    id       TEXT    NOT NULL,
    version  INTEGER NOT NULL,
    body     TEXT    NOT NULL, -- the view as JSON
    listings TEXT    NOT NULL, -- [[list, sort key], …] as JSON
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS document_listings (
    kind     TEXT NOT NULL,
    list     TEXT NOT NULL,
    sort_key TEXT NOT NULL,
    id       TEXT NOT NULL,
    PRIMARY KEY (kind, list, sort_key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS document_listings_by_id ON document_listings (kind, id);
CREATE TABLE IF NOT EXISTS checkpoints (
    consumer TEXT    PRIMARY KEY,
    position INTEGER NOT NULL
) WITHOUT ROWID;
";

/// The read models ([`WalletViews`], [`TransactionHistory`], [`TransferViews`],
/// [`Checkpoints`]) on SQLite: WAL with `synchronous=NORMAL` (they are rebuilt from
/// the events if ever lost), one writer connection (projections are a single
/// writer) and a pool of read connections.
pub struct SqliteReadStore {
    db: Db,
}

impl SqliteReadStore {
    /// Opens (or creates) the read models at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(SqliteReadStore { db: Db::open(path, Synchronous::Normal, SCHEMA)? })
    }
}

/// The guarded write: one statement, so two writers can never both win. Absent
/// counts as version 0: with `previous_version` 0 the row is inserted (or replaces
/// a stored version-0 row); otherwise only a row at `previous_version` is replaced.
fn save_guarded(conn: &rusqlite::Connection, insert: &str, update: &str, values: &[&dyn rusqlite::ToSql], previous_version: u64) -> Result<Saved, StoreError> {
    let previous_version = to_sql_int(previous_version, "previous version")?;
    let changed = if previous_version == 0 {
        conn.prepare_cached(insert).and_then(|mut stmt| stmt.execute(values))
    } else {
        let mut values = values.to_vec();
        values.push(&previous_version);
        conn.prepare_cached(update).and_then(|mut stmt| stmt.execute(values.as_slice()))
    }
    .or_store("saving a view")?;
    Ok(if changed == 1 { Saved::Written } else { Saved::Stale })
}

/// A wallet view encoded for its row, and the version it must replace.
struct WalletRow {
    wallet_id: String,
    owner_id: String,
    created_at: String,
    version: i64,
    json: String,
    previous_version: u64,
}

impl WalletRow {
    fn new(view: &WalletView, previous_version: u64) -> Result<Self, StoreError> {
        Ok(WalletRow {
            wallet_id: view.wallet_id.to_string(),
            owner_id: view.owner_id.clone(),
            created_at: time_key(&view.created_at),
            version: to_sql_int(view.version, "wallet version")?,
            json: serde_json::to_string(view).or_store("encoding a wallet view")?,
            previous_version,
        })
    }

    fn save(&self, conn: &rusqlite::Connection) -> Result<Saved, StoreError> {
        save_guarded(
            conn,
            "INSERT INTO wallet_views (wallet_id, owner_id, created_at, version, view) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (wallet_id) DO UPDATE SET owner_id = excluded.owner_id, created_at = excluded.created_at,
                 version = excluded.version, view = excluded.view
             WHERE wallet_views.version = 0",
            "UPDATE wallet_views SET owner_id = ?2, created_at = ?3, version = ?4, view = ?5 WHERE wallet_id = ?1 AND version = ?6",
            &[&self.wallet_id, &self.owner_id, &self.created_at, &self.version, &self.json],
            self.previous_version,
        )
    }
}

/// A history line encoded for its row.
struct TransactionRow {
    wallet_id: String,
    version: i64,
    json: String,
}

impl TransactionRow {
    fn new(item: &TransactionItem) -> Result<Self, StoreError> {
        Ok(TransactionRow {
            wallet_id: item.wallet_id.to_string(),
            version: to_sql_int(item.version, "transaction version")?,
            json: serde_json::to_string(item).or_store("encoding a transaction")?,
        })
    }

    /// The first write of a (wallet, version) stays.
    fn save(&self, conn: &rusqlite::Connection) -> Result<(), StoreError> {
        conn.prepare_cached("INSERT INTO transactions (wallet_id, version, item) VALUES (?1, ?2, ?3) ON CONFLICT (wallet_id, version) DO NOTHING")
            .and_then(|mut stmt| stmt.execute(params![self.wallet_id, self.version, self.json]))
            .or_store("recording a transaction")?;
        Ok(())
    }
}

/// A transfer view encoded for its row, and the version it must replace.
struct TransferRow {
    transfer_id: String,
    version: i64,
    json: String,
    previous_version: u64,
}

impl TransferRow {
    fn new(view: &TransferView, previous_version: u64) -> Result<Self, StoreError> {
        Ok(TransferRow {
            transfer_id: view.transfer_id.to_string(),
            version: to_sql_int(view.version, "transfer version")?,
            json: serde_json::to_string(view).or_store("encoding a transfer view")?,
            previous_version,
        })
    }

    fn save(&self, conn: &rusqlite::Connection) -> Result<Saved, StoreError> {
        save_guarded(
            conn,
            "INSERT INTO transfer_views (transfer_id, version, view) VALUES (?1, ?2, ?3)
             ON CONFLICT (transfer_id) DO UPDATE SET version = excluded.version, view = excluded.view
             WHERE transfer_views.version = 0",
            "UPDATE transfer_views SET version = ?2, view = ?3 WHERE transfer_id = ?1 AND version = ?4",
            &[&self.transfer_id, &self.version, &self.json],
            self.previous_version,
        )
    }
}

enum Row {
    Wallet(WalletRow),
    Transaction(TransactionRow),
    Transfer(TransferRow),
}

#[async_trait]
impl WalletViews for SqliteReadStore {
    async fn wallet(&self, wallet_id: Uuid) -> Result<Option<WalletView>, StoreError> {
        self.db
            .read(move |conn| {
                let json: Option<String> = conn
                    .prepare_cached("SELECT view FROM wallet_views WHERE wallet_id = ?1")
                    .and_then(|mut stmt| stmt.query_row([wallet_id.to_string()], |row| row.get(0)).optional())
                    .or_store("reading a wallet view")?;
                json.map(|json| serde_json::from_str(&json).map_err(corrupt(|| format!("wallet view {wallet_id}")))).transpose()
            })
            .await
    }

    async fn save_wallet(&self, view: &WalletView, previous_version: u64) -> Result<Saved, StoreError> {
        let row = WalletRow::new(view, previous_version)?;
        self.db.write(move |conn| row.save(conn)).await
    }

    /// One read of the database: a statement per [`WALLETS_PER_STATEMENT`] ids.
    async fn wallets(&self, wallet_ids: &[Uuid]) -> Result<std::collections::HashMap<Uuid, WalletView>, StoreError> {
        let ids: Vec<String> = wallet_ids.iter().map(Uuid::to_string).collect();
        self.db
            .read(move |conn| {
                let mut views = std::collections::HashMap::with_capacity(ids.len());
                for chunk in ids.chunks(WALLETS_PER_STATEMENT) {
                    let placeholders = vec!["?"; chunk.len()].join(",");
                    let mut stmt =
                        conn.prepare(&format!("SELECT wallet_id, view FROM wallet_views WHERE wallet_id IN ({placeholders})")).or_store("preparing")?;
                    let mut rows = stmt.query(rusqlite::params_from_iter(chunk)).or_store("reading wallet views")?;
                    while let Some(row) = rows.next().or_store("reading wallet views")? {
                        let wallet_id: String = row.get(0).or_store("reading wallet views")?;
                        let view: WalletView = serde_json::from_str(&row.get::<_, String>(1).or_store("reading wallet views")?)
                            .map_err(corrupt(|| format!("wallet view {wallet_id}")))?;
                        views.insert(view.wallet_id, view);
                    }
                }
                Ok(views)
            })
            .await
    }

    async fn wallets_of_owner(&self, owner_id: &str) -> Result<Vec<WalletView>, StoreError> {
        let owner_id = owner_id.to_string();
        self.db
            .read(move |conn| {
                let mut stmt =
                    conn.prepare_cached("SELECT wallet_id, view FROM wallet_views WHERE owner_id = ?1 ORDER BY created_at, wallet_id").or_store("preparing")?;
                let mut rows = stmt.query([&owner_id]).or_store("listing wallet views")?;
                let mut wallets = Vec::new();
                while let Some(row) = rows.next().or_store("listing wallet views")? {
                    let wallet_id: String = row.get(0).or_store("listing wallet views")?;
                    let json: String = row.get(1).or_store("listing wallet views")?;
                    wallets.push(serde_json::from_str(&json).map_err(corrupt(|| format!("wallet view {wallet_id}")))?);
                }
                Ok(wallets)
            })
            .await
    }
}

#[async_trait]
impl TransactionHistory for SqliteReadStore {
    async fn record_transaction(&self, item: &TransactionItem) -> Result<(), StoreError> {
        let row = TransactionRow::new(item)?;
        self.db.write(move |conn| row.save(conn)).await
    }

    async fn transactions(&self, wallet_id: Uuid, limit: usize, before_version: Option<u64>) -> Result<Vec<TransactionItem>, StoreError> {
        // A cursor beyond what SQLite can store excludes nothing.
        let before_version = before_version.and_then(|v| i64::try_from(v).ok());
        let limit = sql_limit(limit);
        self.db
            .read(move |conn| {
                let wallet = wallet_id.to_string();
                let mut stmt;
                let mut rows = match before_version {
                    Some(before) => {
                        stmt = conn
                            .prepare_cached("SELECT version, item FROM transactions WHERE wallet_id = ?1 AND version < ?2 ORDER BY version DESC LIMIT ?3")
                            .or_store("preparing")?;
                        stmt.query(params![wallet, before, limit])
                    }
                    None => {
                        stmt = conn
                            .prepare_cached("SELECT version, item FROM transactions WHERE wallet_id = ?1 ORDER BY version DESC LIMIT ?2")
                            .or_store("preparing")?;
                        stmt.query(params![wallet, limit])
                    }
                }
                .or_store("reading transactions")?;
                let mut items = Vec::new();
                while let Some(row) = rows.next().or_store("reading transactions")? {
                    let version: i64 = row.get(0).or_store("reading transactions")?;
                    let json: String = row.get(1).or_store("reading transactions")?;
                    items.push(serde_json::from_str(&json).map_err(corrupt(|| format!("transaction {wallet_id} version {version}")))?);
                }
                Ok(items)
            })
            .await
    }
}

#[async_trait]
impl TransferViews for SqliteReadStore {
    async fn transfer(&self, transfer_id: Uuid) -> Result<Option<TransferView>, StoreError> {
        self.db
            .read(move |conn| {
                let json: Option<String> = conn
                    .prepare_cached("SELECT view FROM transfer_views WHERE transfer_id = ?1")
                    .and_then(|mut stmt| stmt.query_row([transfer_id.to_string()], |row| row.get(0)).optional())
                    .or_store("reading a transfer view")?;
                json.map(|json| serde_json::from_str(&json).map_err(corrupt(|| format!("transfer view {transfer_id}")))).transpose()
            })
            .await
    }

    async fn save_transfer(&self, view: &TransferView, previous_version: u64) -> Result<Saved, StoreError> {
        let row = TransferRow::new(view, previous_version)?;
        self.db.write(move |conn| row.save(conn)).await
    }
}

/// Batches in one SQLite call each: the views of a batch are read in one read
/// transaction (one snapshot), and its writes — the very statements of the
/// one-row methods, each with its own guard — commit as one transaction (one WAL
/// append instead of one per row). Rows are encoded before the writer is taken.
#[async_trait]
impl ReadBatches for SqliteReadStore {
    async fn views(&self, wallet_ids: &[Uuid], transfer_ids: &[Uuid]) -> Result<(Vec<WalletView>, Vec<TransferView>), StoreError> {
        if wallet_ids.is_empty() && transfer_ids.is_empty() {
            return Ok((vec![], vec![]));
        }
        let (wallet_ids, transfer_ids) = (wallet_ids.to_vec(), transfer_ids.to_vec());
        self.db
            .read(move |conn| {
                // One snapshot for the whole batch; dropping it ends it (nothing to commit).
                let snapshot = conn.unchecked_transaction().or_store("beginning a read transaction")?;
                let conn = &*snapshot;
                let read = (|| {
                    let mut wallets = Vec::with_capacity(wallet_ids.len());
                    let mut stmt = conn.prepare_cached("SELECT view FROM wallet_views WHERE wallet_id = ?1").or_store("preparing")?;
                    for id in &wallet_ids {
                        let json: Option<String> = stmt.query_row([id.to_string()], |row| row.get(0)).optional().or_store("reading a wallet view")?;
                        if let Some(json) = json {
                            wallets.push(serde_json::from_str(&json).map_err(corrupt(|| format!("wallet view {id}")))?);
                        }
                    }
                    let mut transfers = Vec::with_capacity(transfer_ids.len());
                    let mut stmt = conn.prepare_cached("SELECT view FROM transfer_views WHERE transfer_id = ?1").or_store("preparing")?;
                    for id in &transfer_ids {
                        let json: Option<String> = stmt.query_row([id.to_string()], |row| row.get(0)).optional().or_store("reading a transfer view")?;
                        if let Some(json) = json {
                            transfers.push(serde_json::from_str(&json).map_err(corrupt(|| format!("transfer view {id}")))?);
                        }
                    }
                    Ok((wallets, transfers))
                })();
                read
            })
            .await
    }

    async fn write_batch(&self, writes: &[ReadWrite]) -> Result<Vec<Option<Saved>>, StoreError> {
        if writes.is_empty() {
            return Ok(vec![]);
        }
        let rows = writes
            .iter()
            .map(|write| {
                Ok(match write {
                    ReadWrite::Wallet { view, previous_version } => Row::Wallet(WalletRow::new(view, *previous_version)?),
                    ReadWrite::Transaction(item) => Row::Transaction(TransactionRow::new(item)?),
                    ReadWrite::Transfer { view, previous_version } => Row::Transfer(TransferRow::new(view, *previous_version)?),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.db
            .write(move |conn| {
                in_write_transaction(conn, "writing a batch", |conn| {
                    rows.iter()
                        .map(|row| match row {
                            Row::Wallet(row) => row.save(conn).map(Some),
                            Row::Transaction(row) => row.save(conn).map(|()| None),
                            Row::Transfer(row) => row.save(conn).map(Some),
                        })
                        .collect::<Result<Vec<_>, StoreError>>()
                })
            })
            .await
    }
}

fn document_from_row(kind: &str, id: &str, version: i64, body: &str, listings: &str) -> Result<Document, StoreError> {
    let what = || format!("{kind} document {id}");
    let listings: Vec<(String, String)> = serde_json::from_str(listings).map_err(corrupt(what))?;
    Ok(Document {
        id: Uuid::parse_str(id).map_err(|e| StoreError::new(format!("sqlite: {}: bad id: {e}", what())))?,
        version: from_sql_int(version, "document version")?,
        body: serde_json::from_str(body).map_err(corrupt(what))?,
        listings: listings.into_iter().map(|(list, sort_key)| Listing { list, sort_key }).collect(),
    })
}

/// Documents in two tables: `documents` holds each one with its version guard,
/// `document_listings` its place in each list; a save rewrites both in one
/// transaction, so a list is never out of step with its documents.
#[async_trait]
impl DocumentViews for SqliteReadStore {
    async fn document(&self, kind: &str, id: Uuid) -> Result<Option<Document>, StoreError> {
        let (kind, id) = (kind.to_string(), id.to_string());
        self.db
            .read(move |conn| {
                let row: Option<(i64, String, String)> = conn
                    .prepare_cached("SELECT version, body, listings FROM documents WHERE kind = ?1 AND id = ?2")
                    .and_then(|mut stmt| stmt.query_row([&kind, &id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?))).optional())
                    .or_store("reading a document")?;
                row.map(|(version, body, listings)| document_from_row(&kind, &id, version, &body, &listings)).transpose()
            })
            .await
    }

    async fn save_document(&self, kind: &str, document: &Document, previous: Option<&Document>) -> Result<Saved, StoreError> {
        let previous_version = previous.map_or(0, |d| d.version);
        let kind = kind.to_string();
        let id = document.id.to_string();
        let version = to_sql_int(document.version, "document version")?;
        let previous = to_sql_int(previous_version, "previous version")?;
        let body = document.body.to_string();
        let pairs: Vec<(String, String)> = document.listings.iter().map(|l| (l.list.clone(), l.sort_key.clone())).collect();
        let listings = serde_json::to_string(&pairs).map_err(|e| StoreError::new(format!("encoding listings: {e}")))?;
        self.db
            .write(move |conn| {
                in_write_transaction(conn, "saving a document", |conn| {
                    let stored: Option<i64> = conn
                        .prepare_cached("SELECT version FROM documents WHERE kind = ?1 AND id = ?2")
                        .and_then(|mut stmt| stmt.query_row([&kind, &id], |row| row.get(0)).optional())
                        .or_store("reading a document version")?;
                    if stored.unwrap_or(0) != previous {
                        return Ok(Saved::Stale);
                    }
                    conn.prepare_cached(
                        "INSERT INTO documents (kind, id, version, body, listings) VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (kind, id) DO UPDATE SET version = excluded.version, body = excluded.body, listings = excluded.listings",
                    )
                    .and_then(|mut stmt| stmt.execute(params![kind, id, version, body, listings]))
                    .or_store("saving a document")?;
                    conn.prepare_cached("DELETE FROM document_listings WHERE kind = ?1 AND id = ?2")
                        .and_then(|mut stmt| stmt.execute([&kind, &id]))
                        .or_store("dropping listings")?;
                    let mut insert = conn
                        .prepare_cached("INSERT OR REPLACE INTO document_listings (kind, list, sort_key, id) VALUES (?1, ?2, ?3, ?4)")
                        .or_store("preparing")?;
                    for (list, sort_key) in &pairs {
                        insert.execute(params![kind, list, sort_key, id]).or_store("saving a listing")?;
                    }
                    Ok(Saved::Written)
                })
            })
            .await
    }

    async fn listed(&self, kind: &str, list: &str, limit: usize, before: Option<&str>) -> Result<ListedPage, StoreError> {
        let (kind, list) = (kind.to_string(), list.to_string());
        // One more than asked: whether there is a next page.
        let fetch = sql_limit(limit.saturating_add(1));
        // U+10FFFF sorts after every key: "before nothing" is "before the end".
        let before = before.map_or_else(|| char::MAX.to_string(), str::to_string);
        self.db
            .read(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT l.sort_key, d.id, d.version, d.body, d.listings FROM document_listings l
                         JOIN documents d ON d.kind = l.kind AND d.id = l.id
                         WHERE l.kind = ?1 AND l.list = ?2 AND l.sort_key < ?3 ORDER BY l.sort_key DESC LIMIT ?4",
                    )
                    .or_store("preparing")?;
                let mut rows = stmt.query(params![kind, list, before, fetch]).or_store("listing documents")?;
                let mut page = Vec::new();
                while let Some(row) = rows.next().or_store("listing documents")? {
                    let columns = (|| Ok::<_, rusqlite::Error>((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?)))();
                    let (sort_key, id, version, body, listings): (String, String, i64, String, String) = columns.or_store("listing documents")?;
                    page.push((sort_key, document_from_row(&kind, &id, version, &body, &listings)?));
                }
                let next = (page.len() > limit).then(|| page[limit - 1].0.clone());
                page.truncate(limit);
                Ok(ListedPage { documents: page.into_iter().map(|(_, document)| document).collect(), next })
            })
            .await
    }
}

#[async_trait]
impl Checkpoints for SqliteReadStore {
    async fn checkpoint(&self, consumer: &str) -> Result<u64, StoreError> {
        let consumer = consumer.to_string();
        self.db
            .read(move |conn| {
                let position: Option<i64> = conn
                    .prepare_cached("SELECT position FROM checkpoints WHERE consumer = ?1")
                    .and_then(|mut stmt| stmt.query_row([&consumer], |row| row.get(0)).optional())
                    .or_store("reading a checkpoint")?;
                position.map_or(Ok(0), |p| from_sql_int(p, "checkpoint"))
            })
            .await
    }

    async fn save_checkpoint(&self, consumer: &str, position: u64) -> Result<(), StoreError> {
        let consumer = consumer.to_string();
        let position = to_sql_int(position, "checkpoint")?;
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO checkpoints (consumer, position) VALUES (?1, ?2)
                     ON CONFLICT (consumer) DO UPDATE SET position = excluded.position",
                )
                .and_then(|mut stmt| stmt.execute(params![consumer, position]))
                .or_store("saving a checkpoint")?;
                Ok(())
            })
            .await
    }
}
