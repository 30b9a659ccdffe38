//! vaultrs, a Rust Vault client, against a dev server: KV v2 and v1, mounts, wrapping, tokens,
//! AppRole.
//! Where our answer could differ from Vault's documented JSON, vaultrs's typed responses pin
//! Vault's shape: a missing or renamed field fails to deserialize.

use std::collections::HashMap;

use vaultrs::api::ResponseWrapper;
use vaultrs::api::auth::approle::requests::SetAppRoleRequest;
use vaultrs::api::kv2::requests::{
    ReadSecretRequest, SetSecretMetadataRequest, SetSecretRequestOptions,
};
use vaultrs::api::sys::requests::EnableEngineRequest;
use vaultrs::api::token::requests::CreateTokenRequest;
use vaultrs::auth::approle;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;
use vaultrs::{kv1, kv2, sys, token};

use crate::support;

fn client(address: &str, token: &str) -> VaultClient {
    // reqwest is built without a crypto provider; rustls uses the process default, ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    VaultClient::new(
        VaultClientSettingsBuilder::default()
            .address(address)
            .token(token)
            .build()
            .unwrap(),
    )
    .unwrap()
}

/// The HTTP status of a failed call. vaultrs reports a 404 that carries a body (a deleted KV
/// version, as Vault sends it) as a rustify error rather than an `APIError`; both carry the code.
fn status_of(error: ClientError) -> u16 {
    match error {
        ClientError::APIError { code, .. } => code,
        other => {
            let text = format!("{other:?}");
            text.split("code: ")
                .nth(1)
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|code| code.parse().ok())
                .unwrap_or_else(|| panic!("expected an HTTP error, got {text}"))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vaultrs_kv_mounts_tokens_and_wrapping() {
    let (_dir, server) = support::dev_server();
    let client = client(&server.address, "root");

    // sys
    let health = sys::health(&client).await.unwrap();
    assert!(health.initialized && !health.sealed);
    let me = token::lookup_self(&client).await.unwrap();
    assert_eq!(me.policies, vec!["root".to_owned()]);
    assert_eq!(me.id, "root");

    // KV v2
    let mut secret = HashMap::new();
    secret.insert("user", "svc");
    secret.insert("password", "p1");
    let written = kv2::set(&client, "secret", "rs/app", &secret)
        .await
        .unwrap();
    assert_eq!((written.version, written.destroyed), (1, false));
    secret.insert("password", "p2");
    assert_eq!(
        kv2::set(&client, "secret", "rs/app", &secret)
            .await
            .unwrap()
            .version,
        2
    );
    let latest: HashMap<String, String> = kv2::read(&client, "secret", "rs/app").await.unwrap();
    assert_eq!(latest["password"], "p2");
    let first: HashMap<String, String> = kv2::read_version(&client, "secret", "rs/app", 1)
        .await
        .unwrap();
    assert_eq!(first["password"], "p1");
    let missing = kv2::read::<HashMap<String, String>>(&client, "secret", "rs/nothing").await;
    assert_eq!(status_of(missing.unwrap_err()), 404);

    // Check-and-set: a stale cas is a 400, the right one writes.
    let stale = kv2::set_with_options(
        &client,
        "secret",
        "rs/app",
        &secret,
        SetSecretRequestOptions { cas: 1 },
    )
    .await;
    assert_eq!(status_of(stale.unwrap_err()), 400);
    let next = kv2::set_with_options(
        &client,
        "secret",
        "rs/app",
        &secret,
        SetSecretRequestOptions { cas: 2 },
    )
    .await
    .unwrap();
    assert_eq!(next.version, 3);

    // Metadata, with its typed response pinning Vault's fields.
    kv2::set_metadata(
        &client,
        "secret",
        "rs/app",
        Some(
            SetSecretMetadataRequest::builder()
                .max_versions(5u64)
                .custom_metadata(HashMap::from([("owner".to_owned(), "payments".to_owned())])),
        ),
    )
    .await
    .unwrap();
    let metadata = kv2::read_metadata(&client, "secret", "rs/app")
        .await
        .unwrap();
    assert_eq!(metadata.current_version, 3);
    assert_eq!(metadata.max_versions, 5);
    assert_eq!(metadata.custom_metadata.unwrap()["owner"], "payments");
    assert_eq!(metadata.versions.len(), 3);

    assert_eq!(
        kv2::list(&client, "secret", "rs").await.unwrap(),
        vec!["app".to_owned()]
    );

    // Response wrapping (vaultrs asks for a 10 minute TTL): look up, then unwrap exactly once.
    let wrapped = ReadSecretRequest::builder()
        .mount("secret")
        .path("rs/app")
        .build()
        .unwrap()
        .wrap(&client)
        .await
        .unwrap();
    let lookup = wrapped.lookup(&client).await.unwrap();
    assert_eq!(lookup.creation_ttl, 600);
    assert_eq!(lookup.creation_path, "secret/data/rs/app");
    let unwrapped = wrapped.unwrap(&client).await.unwrap();
    assert_eq!(unwrapped.data["password"], "p2");
    assert_eq!(status_of(wrapped.unwrap(&client).await.unwrap_err()), 400);

    kv2::delete_latest(&client, "secret", "rs/app")
        .await
        .unwrap();
    assert_eq!(
        status_of(
            kv2::read::<HashMap<String, String>>(&client, "secret", "rs/app")
                .await
                .unwrap_err()
        ),
        404
    );
    kv2::undelete_versions(&client, "secret", "rs/app", vec![3])
        .await
        .unwrap();
    let back: HashMap<String, String> = kv2::read(&client, "secret", "rs/app").await.unwrap();
    assert_eq!(back["password"], "p2");
    kv2::destroy_versions(&client, "secret", "rs/app", vec![1])
        .await
        .unwrap();
    let metadata = kv2::read_metadata(&client, "secret", "rs/app")
        .await
        .unwrap();
    assert!(metadata.versions["1"].destroyed);
    kv2::delete_metadata(&client, "secret", "rs/app")
        .await
        .unwrap();
    assert_eq!(
        status_of(
            kv2::read_metadata(&client, "secret", "rs/app")
                .await
                .unwrap_err()
        ),
        404
    );

    // Mounts and KV v1.
    sys::mount::enable(
        &client,
        "rs-kv1",
        "kv",
        Some(EnableEngineRequest::builder().description("v1 store")),
    )
    .await
    .unwrap();
    let mounts = sys::mount::list(&client).await.unwrap();
    assert_eq!(mounts["rs-kv1/"].mount_type, "kv");
    assert_eq!(mounts["rs-kv1/"].description, "v1 store");
    assert_eq!(mounts["secret/"].options.as_ref().unwrap()["version"], "2");
    kv1::set(&client, "rs-kv1", "app", &HashMap::from([("k", "v")]))
        .await
        .unwrap();
    let value: HashMap<String, String> = kv1::get(&client, "rs-kv1", "app").await.unwrap();
    assert_eq!(value["k"], "v");
    assert_eq!(
        kv1::list(&client, "rs-kv1", "").await.unwrap().data.keys,
        vec!["app".to_owned()]
    );
    kv1::delete(&client, "rs-kv1", "app").await.unwrap();
    sys::mount::disable(&client, "rs-kv1").await.unwrap();
    assert!(
        !sys::mount::list(&client)
            .await
            .unwrap()
            .contains_key("rs-kv1/")
    );

    // A wrong token is 403.
    let stranger = self::client(&server.address, "nope");
    assert_eq!(
        status_of(kv2::list(&stranger, "secret", "").await.unwrap_err()),
        403
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vaultrs_tokens_and_an_approle_login() {
    let (_dir, server) = support::dev_server();
    let root = client(&server.address, "root");

    // A child token, typed by vaultrs's `AuthInfo`.
    let created = token::new(
        &root,
        Some(
            CreateTokenRequest::builder()
                .policies(vec!["app".to_owned()])
                .ttl("1h")
                .display_name("rs")
                .meta(HashMap::from([("team".to_owned(), "payments".to_owned())])),
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        created.policies,
        vec!["app".to_owned(), "default".to_owned()]
    );
    assert_eq!(created.lease_duration, 3600);
    assert!(created.renewable && !created.orphan);
    assert_eq!(created.token_type, "service");
    assert_eq!(
        created.metadata.as_ref().unwrap()["team"],
        "payments".to_owned()
    );

    let looked_up = token::lookup(&root, &created.client_token).await.unwrap();
    assert_eq!(looked_up.id, created.client_token);
    assert_eq!(looked_up.accessor, created.accessor);
    assert_eq!(looked_up.display_name, "token-rs");
    assert_eq!(looked_up.path, "auth/token/create");
    assert_eq!(looked_up.creation_ttl, 3600);
    assert!(looked_up.ttl > 3500 && looked_up.ttl <= 3600);
    assert_eq!(looked_up.meta.unwrap()["team"], "payments");
    let by_accessor = token::lookup_accessor(&root, &created.accessor)
        .await
        .unwrap();
    assert_eq!(by_accessor.id, "", "a lookup by accessor hides the token");
    let child = client(&server.address, &created.client_token);
    let me = token::lookup_self(&child).await.unwrap();
    assert_eq!(me.accessor, created.accessor);
    let renewed = token::renew_self(&child, Some("30m")).await.unwrap();
    assert_eq!(renewed.lease_duration, 1800);

    token::revoke(&root, &created.client_token).await.unwrap();
    assert_eq!(
        status_of(token::lookup_self(&child).await.unwrap_err()),
        403
    );
    assert_eq!(
        status_of(
            token::lookup(&root, &created.client_token)
                .await
                .unwrap_err()
        ),
        403,
        "Vault answers a lookup of an unknown token with 403 (bad token)"
    );

    // AppRole: a role, its role id, a secret id and a login, all typed by vaultrs.
    sys::auth::enable(&root, "rs-approle", "approle", None)
        .await
        .unwrap();
    approle::role::set(
        &root,
        "rs-approle",
        "worker",
        Some(
            SetAppRoleRequest::builder()
                .token_policies(vec!["jobs".to_owned()])
                .token_ttl("20m")
                .secret_id_num_uses(1u64),
        ),
    )
    .await
    .unwrap();
    let role = approle::role::read(&root, "rs-approle", "worker")
        .await
        .unwrap();
    assert_eq!(role.token_policies, vec!["jobs".to_owned()]);
    assert_eq!(role.token_ttl, 1200);
    assert_eq!(role.secret_id_num_uses, 1);
    assert!(role.bind_secret_id);
    assert!(role.token_bound_cidrs.is_empty());
    let role_id = approle::role::read_id(&root, "rs-approle", "worker")
        .await
        .unwrap()
        .role_id;
    let secret = approle::role::secret::generate(&root, "rs-approle", "worker", None)
        .await
        .unwrap();
    assert!(!secret.secret_id_accessor.is_empty());

    let anonymous = client(&server.address, "");
    let login = approle::login(&anonymous, "rs-approle", &role_id, &secret.secret_id)
        .await
        .unwrap();
    assert_eq!(
        login.policies,
        vec!["default".to_owned(), "jobs".to_owned()]
    );
    assert_eq!(login.lease_duration, 1200);
    assert_eq!(login.metadata.unwrap()["role_name"], "worker");
    let machine = client(&server.address, &login.client_token);
    assert_eq!(
        token::lookup_self(&machine).await.unwrap().path,
        "auth/rs-approle/login"
    );
    // The secret id had one use.
    assert_eq!(
        status_of(
            approle::login(&anonymous, "rs-approle", &role_id, &secret.secret_id)
                .await
                .unwrap_err()
        ),
        400
    );
}
