//! How the secret commands (`kv`, `run`, `export`, `import`) reach the server: the same flags
//! and environment variables as `custos operator`, without its table/json `--format`, because
//! these commands have formats of their own.

use std::path::PathBuf;

use custos_client::{Client, ClientConfig};

/// Address, token and TLS material of the server.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ConnectionArgs {
    /// Server address [env: CUSTOS_ADDR, falls back to VAULT_ADDR; default https://127.0.0.1:8200]
    #[arg(long, global = true, value_name = "URL")]
    address: Option<String>,
    /// Token [env: CUSTOS_TOKEN, falls back to VAULT_TOKEN, then the token `custos login` stored in ~/.custos-token]
    #[arg(long, global = true, value_name = "TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM bundle of CAs that signed the server's certificate [env: CUSTOS_CACERT or VAULT_CACERT]
    #[arg(long, global = true, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// PEM client certificate for mTLS [env: CUSTOS_CLIENT_CERT or VAULT_CLIENT_CERT]
    #[arg(long, global = true, value_name = "FILE")]
    client_cert: Option<PathBuf>,
    /// PEM key of the client certificate [env: CUSTOS_CLIENT_KEY or VAULT_CLIENT_KEY]
    #[arg(long, global = true, value_name = "FILE")]
    client_key: Option<PathBuf>,
}

/// The first non-empty variable of the two.
fn env_either(primary: &str, fallback: &str) -> Option<String> {
    std::env::var(primary)
        .ok()
        .filter(|value| !value.is_empty())
        .or_else(|| {
            std::env::var(fallback)
                .ok()
                .filter(|value| !value.is_empty())
        })
}

impl ConnectionArgs {
    /// A client for these flags, each falling back to its environment variables; the token
    /// falls back to the one `custos login` stored.
    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        let read_env = |name: &str| std::env::var(name).ok();
        let home = crate::token_helper::home_dir();
        let token = crate::token_helper::pick(self.token.clone(), &read_env, home.as_deref())?;
        self.client_with_token(token)
    }

    /// A client for these flags with exactly `token` (or none), whatever the environment says:
    /// for logging in, and for checking a token before it is stored.
    pub(crate) fn client_with_token(&self, token: Option<String>) -> anyhow::Result<Client> {
        client_for(
            self.address.clone(),
            token,
            TlsFiles {
                ca_cert: self.ca_cert.clone(),
                client_cert: self.client_cert.clone(),
                client_key: self.client_key.clone(),
            },
        )
    }

    /// The `--token` flag, if given.
    pub(crate) fn token_flag(&self) -> Option<&str> {
        self.token.as_deref()
    }
}

/// TLS material given on the command line; each falls back to its environment variables.
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsFiles {
    pub(crate) ca_cert: Option<PathBuf>,
    pub(crate) client_cert: Option<PathBuf>,
    pub(crate) client_key: Option<PathBuf>,
}

/// A client for `address` (falling back to CUSTOS_ADDR, VAULT_ADDR, then the default) with
/// `token`, and TLS material from `tls` or the environment.
pub(crate) fn client_for(
    address: Option<String>,
    token: Option<String>,
    tls: TlsFiles,
) -> anyhow::Result<Client> {
    let path_env = |primary, fallback| env_either(primary, fallback).map(PathBuf::from);
    let config = ClientConfig {
        address: address
            .or_else(|| env_either("CUSTOS_ADDR", "VAULT_ADDR"))
            .unwrap_or_else(|| "https://127.0.0.1:8200".into()),
        token,
        ca_cert: tls
            .ca_cert
            .or_else(|| path_env("CUSTOS_CACERT", "VAULT_CACERT")),
        client_cert: tls
            .client_cert
            .or_else(|| path_env("CUSTOS_CLIENT_CERT", "VAULT_CLIENT_CERT")),
        client_key: tls
            .client_key
            .or_else(|| path_env("CUSTOS_CLIENT_KEY", "VAULT_CLIENT_KEY")),
        timeout: None,
    };
    Ok(Client::new(config)?)
}
