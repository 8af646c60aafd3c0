//! The JWT signing secret: `HEALTHPAY_JWT_SECRET`, or one generated once and kept in
//! the data directory (readable by its owner only), so that `healthpay token` and
//! `healthpay serve` agree without configuration.

use std::io::Write;
use std::path::Path;

pub const ENV: &str = "HEALTHPAY_JWT_SECRET";
const FILE: &str = "jwt-secret";

pub fn load_or_create(data_dir: &Path) -> std::io::Result<Vec<u8>> {
    if let Ok(secret) = std::env::var(ENV) {
        if secret.len() < 16 {
            return Err(std::io::Error::other(format!("{ENV} must be at least 16 characters")));
        }
        return Ok(secret.into_bytes());
    }
    let path = data_dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(secret) if !secret.trim().is_empty() => return Ok(secret.trim().as_bytes().to_vec()),
        Ok(_) => return Err(std::io::Error::other(format!("{} is empty; delete it to generate a new secret", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(data_dir)?;
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut file) => {
            file.write_all(secret.as_bytes())?;
            file.sync_all()?;
            Ok(secret.into_bytes())
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(std::fs::read_to_string(&path)?.trim().as_bytes().to_vec()),
        Err(e) => Err(e),
    }
}
