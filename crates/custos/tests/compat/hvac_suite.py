"""Compatibility suite: hvac, HashiCorp Vault's Python client, against a custos server.

Run by crates/custos/tests/it/hvac.rs with CUSTOS_ADDR and CUSTOS_TOKEN pointing at a dev server.
Each check asserts the shape Vault documents; the closing line is "N passed, M failed".
"""
import os
import sys
import traceback

import hvac
import hvac.exceptions

ADDR = os.environ["CUSTOS_ADDR"]
TOKEN = os.environ["CUSTOS_TOKEN"]
client = hvac.Client(url=ADDR, token=TOKEN)
checks = []


def check(function):
    checks.append(function)
    return function


def raises(exception, function, *args, **kwargs):
    try:
        function(*args, **kwargs)
    except exception:
        return
    raise AssertionError(f"{function.__name__} did not raise {exception.__name__}")


@check
def sys_status():
    assert client.is_authenticated()
    assert client.sys.is_initialized()
    assert not client.sys.is_sealed()
    health = client.sys.read_health_status(method="GET")
    assert health["initialized"] and not health["sealed"], health
    seal = client.sys.read_seal_status()
    assert seal["type"] == "shamir" and seal["t"] == 1, seal


@check
def wrong_token_is_forbidden():
    stranger = hvac.Client(url=ADDR, token="not-a-token")
    assert not stranger.is_authenticated()
    raises(hvac.exceptions.Forbidden, stranger.secrets.kv.v2.read_secret_version, path="x", mount_point="secret")


@check
def kv2_write_read_versions():
    kv = client.secrets.kv.v2
    first = kv.create_or_update_secret(path="hvac/app", secret={"user": "svc", "password": "p1"}, mount_point="secret")
    assert first["data"]["version"] == 1, first
    second = kv.create_or_update_secret(path="hvac/app", secret={"user": "svc", "password": "p2"}, mount_point="secret")
    assert second["data"]["version"] == 2
    latest = kv.read_secret_version(path="hvac/app", mount_point="secret", raise_on_deleted_version=True)
    assert latest["data"]["data"] == {"user": "svc", "password": "p2"}, latest
    assert latest["data"]["metadata"]["version"] == 2
    assert latest["data"]["metadata"]["deletion_time"] == ""
    assert latest["data"]["metadata"]["destroyed"] is False
    old = kv.read_secret_version(path="hvac/app", version=1, mount_point="secret", raise_on_deleted_version=True)
    assert old["data"]["data"]["password"] == "p1"
    raises(hvac.exceptions.InvalidPath, kv.read_secret_version, path="hvac/missing", mount_point="secret", raise_on_deleted_version=True)


@check
def kv2_check_and_set():
    kv = client.secrets.kv.v2
    kv.create_or_update_secret(path="hvac/cas", secret={"n": "1"}, cas=0, mount_point="secret")
    raises(hvac.exceptions.InvalidRequest, kv.create_or_update_secret, path="hvac/cas", secret={"n": "x"}, cas=0, mount_point="secret")
    raises(hvac.exceptions.InvalidRequest, kv.create_or_update_secret, path="hvac/cas", secret={"n": "x"}, cas=5, mount_point="secret")
    written = kv.create_or_update_secret(path="hvac/cas", secret={"n": "2"}, cas=1, mount_point="secret")
    assert written["data"]["version"] == 2


@check
def kv2_patch():
    kv = client.secrets.kv.v2
    kv.create_or_update_secret(path="hvac/patch", secret={"a": "1", "b": "2"}, mount_point="secret")
    kv.patch(path="hvac/patch", secret={"b": "3", "c": "4"}, mount_point="secret")
    read = kv.read_secret_version(path="hvac/patch", mount_point="secret", raise_on_deleted_version=True)
    assert read["data"]["data"] == {"a": "1", "b": "3", "c": "4"}, read


@check
def kv2_list_and_metadata():
    kv = client.secrets.kv.v2
    kv.create_or_update_secret(path="hvac/list/one", secret={"x": "1"}, mount_point="secret")
    kv.create_or_update_secret(path="hvac/list/sub/two", secret={"x": "2"}, mount_point="secret")
    listed = kv.list_secrets(path="hvac/list", mount_point="secret")
    assert listed["data"]["keys"] == ["one", "sub/"], listed
    kv.update_metadata(path="hvac/list/one", max_versions=3, cas_required=False,
                       delete_version_after="1h", custom_metadata={"owner": "payments"}, mount_point="secret")
    meta = kv.read_secret_metadata(path="hvac/list/one", mount_point="secret")["data"]
    assert meta["max_versions"] == 3, meta
    assert meta["delete_version_after"] == "1h0m0s", meta
    assert meta["custom_metadata"] == {"owner": "payments"}, meta
    assert meta["current_version"] == 1 and "1" in meta["versions"], meta
    for field in ["cas_required", "created_time", "oldest_version", "updated_time"]:
        assert field in meta, field


@check
def kv2_max_versions_trims():
    kv = client.secrets.kv.v2
    kv.update_metadata(path="hvac/trim", max_versions=2, mount_point="secret")
    for n in range(4):
        kv.create_or_update_secret(path="hvac/trim", secret={"n": str(n)}, mount_point="secret")
    meta = kv.read_secret_metadata(path="hvac/trim", mount_point="secret")["data"]
    assert sorted(meta["versions"].keys()) == ["3", "4"], meta
    assert meta["current_version"] == 4 and meta["oldest_version"] == 3, meta


@check
def kv2_delete_undelete_destroy():
    kv = client.secrets.kv.v2
    for n in range(3):
        kv.create_or_update_secret(path="hvac/life", secret={"n": str(n)}, mount_point="secret")
    kv.delete_latest_version_of_secret(path="hvac/life", mount_point="secret")
    raises(hvac.exceptions.InvalidPath, kv.read_secret_version, path="hvac/life", mount_point="secret", raise_on_deleted_version=True)
    deleted = kv.read_secret_version(path="hvac/life", mount_point="secret", raise_on_deleted_version=False)
    assert deleted["data"]["data"] is None and deleted["data"]["metadata"]["deletion_time"] != "", deleted
    kv.undelete_secret_versions(path="hvac/life", versions=[3], mount_point="secret")
    assert kv.read_secret_version(path="hvac/life", mount_point="secret", raise_on_deleted_version=True)["data"]["data"]["n"] == "2"
    kv.delete_secret_versions(path="hvac/life", versions=[1], mount_point="secret")
    kv.destroy_secret_versions(path="hvac/life", versions=[2], mount_point="secret")
    versions = kv.read_secret_metadata(path="hvac/life", mount_point="secret")["data"]["versions"]
    assert versions["1"]["deletion_time"] != "" and not versions["1"]["destroyed"], versions
    assert versions["2"]["destroyed"] is True, versions
    kv.delete_metadata_and_all_versions(path="hvac/life", mount_point="secret")
    raises(hvac.exceptions.InvalidPath, kv.read_secret_metadata, path="hvac/life", mount_point="secret")


@check
def kv2_configuration():
    kv = client.secrets.kv.v2
    kv.configure(max_versions=7, cas_required=False, delete_version_after="0s", mount_point="secret")
    config = kv.read_configuration(mount_point="secret")["data"]
    assert config["max_versions"] == 7 and config["cas_required"] is False, config
    kv.configure(max_versions=0, mount_point="secret")


@check
def mounts_and_kv1():
    client.sys.enable_secrets_engine(backend_type="kv", path="hvac-kv1", options={"version": "1"}, description="v1")
    mounts = client.sys.list_mounted_secrets_engines()["data"]
    assert mounts["hvac-kv1/"]["type"] == "kv", mounts
    assert mounts["secret/"]["options"]["version"] == "2"
    kv1 = client.secrets.kv.v1
    kv1.create_or_update_secret(path="app", secret={"k": "v"}, mount_point="hvac-kv1")
    assert kv1.read_secret(path="app", mount_point="hvac-kv1")["data"] == {"k": "v"}
    assert kv1.list_secrets(path="", mount_point="hvac-kv1")["data"]["keys"] == ["app"]
    kv1.delete_secret(path="app", mount_point="hvac-kv1")
    raises(hvac.exceptions.InvalidPath, kv1.read_secret, path="app", mount_point="hvac-kv1")
    client.sys.tune_mount_configuration(path="hvac-kv1", default_lease_ttl="1h", max_lease_ttl="2h")
    tuned = client.sys.read_mount_configuration(path="hvac-kv1")["data"]
    assert tuned["default_lease_ttl"] == 3600 and tuned["max_lease_ttl"] == 7200, tuned
    client.sys.move_backend(from_path="hvac-kv1", to_path="hvac-kv1-moved")
    assert "hvac-kv1-moved/" in client.sys.list_mounted_secrets_engines()["data"]
    client.sys.disable_secrets_engine(path="hvac-kv1-moved")
    assert "hvac-kv1-moved/" not in client.sys.list_mounted_secrets_engines()["data"]


@check
def response_wrapping():
    client.secrets.kv.v2.create_or_update_secret(path="hvac/wrapped", secret={"api_key": "k"}, mount_point="secret")
    wrapped = client.adapter.get("/v1/secret/data/hvac/wrapped", headers={"X-Vault-Wrap-TTL": "120"})
    info = wrapped["wrap_info"]
    assert info["ttl"] == 120 and info["creation_path"] == "secret/data/hvac/wrapped", wrapped
    looked_up = client.sys.read_wrapping_properties(info["token"]) if hasattr(client.sys, "read_wrapping_properties") \
        else client.adapter.post("/v1/sys/wrapping/lookup", json={"token": info["token"]})
    assert looked_up["data"]["creation_ttl"] == 120, looked_up
    unwrapped = hvac.Client(url=ADDR, token=info["token"]).sys.unwrap()
    assert unwrapped["data"]["data"] == {"api_key": "k"}, unwrapped
    raises(hvac.exceptions.InvalidRequest, hvac.Client(url=ADDR, token=info["token"]).sys.unwrap)
    rewrapped = client.adapter.post("/v1/sys/wrapping/wrap", json={"a": "b"}, headers={"X-Vault-Wrap-TTL": "60"})
    assert client.sys.unwrap(token=rewrapped["wrap_info"]["token"])["data"] == {"a": "b"}


@check
def mount_tune_round_trip():
    client.sys.enable_secrets_engine(backend_type="kv", path="hvac-tune", options={"version": "1"})
    client.sys.tune_mount_configuration(path="hvac-tune", default_lease_ttl="1h", max_lease_ttl="2h",
                                        listing_visibility="unauth", audit_non_hmac_request_keys=["a"],
                                        passthrough_request_headers=["X-A"], allowed_response_headers=["X-B"])
    client.sys.tune_mount_configuration(path="hvac-tune", description="tuned")
    tune = client.sys.read_mount_configuration(path="hvac-tune")["data"]
    assert (tune["default_lease_ttl"], tune["max_lease_ttl"]) == (3600, 7200), tune
    assert tune["description"] == "tuned", tune
    assert tune["listing_visibility"] == "unauth", tune
    assert tune["audit_non_hmac_request_keys"] == ["a"], tune
    assert tune["passthrough_request_headers"] == ["X-A"], tune
    assert tune["allowed_response_headers"] == ["X-B"], tune
    raises(hvac.exceptions.InvalidRequest, client.sys.tune_mount_configuration, path="hvac-tune",
           listing_visibility="bogus")
    client.sys.disable_secrets_engine(path="hvac-tune")


@check
def wrapping_through_hvacs_own_calls():
    # hvac.sys.wrap sends the TTL as given: Vault's day unit works, as do seconds.
    wrapped = client.sys.wrap(payload={"k": "v"}, ttl="1d")
    info = wrapped["wrap_info"]
    assert info["ttl"] == 86400 and info["creation_path"] == "sys/wrapping/wrap", wrapped
    looked_up = client.adapter.post("/v1/sys/wrapping/lookup", json={"token": info["token"]})
    assert looked_up["data"]["creation_ttl"] == 86400, looked_up
    assert client.sys.unwrap(token=info["token"])["data"] == {"k": "v"}
    # An invalid or used wrapping token is 400 (hvac's InvalidRequest), as against Vault.
    raises(hvac.exceptions.InvalidRequest, client.sys.unwrap, token=info["token"])
    raises(hvac.exceptions.InvalidRequest, client.sys.unwrap, token="s.not-a-wrapping-token")
    raises(hvac.exceptions.InvalidRequest, client.adapter.post, "/v1/sys/wrapping/lookup", json={"token": "s.bogus"})
    # A zero wrap TTL means no wrapping, as in Vault.
    client.secrets.kv.v2.create_or_update_secret(path="hvac/nowrap", secret={"a": "1"}, mount_point="secret")
    plain = client.adapter.get("/v1/secret/data/hvac/nowrap", headers={"X-Vault-Wrap-TTL": "0"})
    assert plain["wrap_info"] is None and plain["data"]["data"] == {"a": "1"}, plain
    # The reported version parses as a Vault release.
    version = client.sys.read_health_status(method="GET")["version"]
    assert version.split("+")[0].count(".") == 2 and version.startswith("1."), version


@check
def userpass_users_and_login():
    client.sys.enable_auth_method(method_type="userpass", path="hvac-up")
    methods = client.sys.list_auth_methods()["data"]
    assert methods["hvac-up/"]["type"] == "userpass" and "token/" in methods, methods
    client.auth.userpass.create_or_update_user(username="alice", password="s3cret", policies=["dev"],
                                               mount_point="hvac-up")
    user = client.auth.userpass.read_user(username="alice", mount_point="hvac-up")["data"]
    assert user["token_policies"] == ["dev"], user
    assert "alice" in client.auth.userpass.list_user(mount_point="hvac-up")["data"]["keys"]
    login_client = hvac.Client(url=ADDR)
    answer = login_client.auth.userpass.login(username="alice", password="s3cret", mount_point="hvac-up")
    assert answer["auth"]["policies"] == ["default", "dev"], answer
    assert answer["auth"]["metadata"] == {"username": "alice"}, answer
    assert login_client.token == answer["auth"]["client_token"]
    assert login_client.is_authenticated()
    assert login_client.auth.token.lookup_self()["data"]["display_name"] == "hvac-up-alice"
    raises(hvac.exceptions.InvalidRequest, hvac.Client(url=ADDR).auth.userpass.login,
           username="alice", password="wrong", mount_point="hvac-up")
    client.auth.userpass.delete_user(username="alice", mount_point="hvac-up")
    client.sys.disable_auth_method(path="hvac-up")
    assert "hvac-up/" not in client.sys.list_auth_methods()["data"]


@check
def token_create_lookup_renew_revoke():
    tokens = client.auth.token
    created = tokens.create(policies=["app"], ttl="1h", display_name="hvac", meta={"team": "web"})
    auth = created["auth"]
    assert auth["policies"] == ["app", "default"] and auth["lease_duration"] == 3600, created
    assert auth["renewable"] is True and auth["metadata"] == {"team": "web"}, created
    token = auth["client_token"]
    looked_up = tokens.lookup(token)["data"]
    assert looked_up["id"] == token and looked_up["accessor"] == auth["accessor"], looked_up
    assert looked_up["display_name"] == "token-hvac" and looked_up["creation_ttl"] == 3600, looked_up
    assert looked_up["meta"] == {"team": "web"} and looked_up["path"] == "auth/token/create", looked_up
    by_accessor = tokens.lookup_accessor(auth["accessor"])["data"]
    assert by_accessor["id"] == "" and by_accessor["display_name"] == "token-hvac", by_accessor
    renewed = tokens.renew(token, increment="30m")["auth"]
    assert renewed["client_token"] == token and renewed["lease_duration"] == 1800, renewed
    holder = hvac.Client(url=ADDR, token=token)
    assert holder.is_authenticated()
    assert holder.auth.token.lookup_self()["data"]["ttl"] <= 1800
    tokens.revoke(token)
    assert not holder.is_authenticated()
    raises(hvac.exceptions.Forbidden, tokens.lookup, token)


@check
def approle_role_secret_id_and_login():
    client.sys.enable_auth_method(method_type="approle", path="hvac-ar")
    approle = client.auth.approle
    # hvac sends lists as comma-separated strings and metadata as a JSON string.
    approle.create_or_update_approle(role_name="worker", token_policies=["jobs", "reports"], token_ttl="20m",
                                     secret_id_num_uses=2, secret_id_bound_cidrs=["127.0.0.0/8"],
                                     mount_point="hvac-ar")
    role = approle.read_role(role_name="worker", mount_point="hvac-ar")["data"]
    assert role["token_policies"] == ["jobs", "reports"] and role["token_ttl"] == 1200, role
    assert role["secret_id_bound_cidrs"] == ["127.0.0.0/8"] and role["secret_id_num_uses"] == 2, role
    assert "worker" in approle.list_roles(mount_point="hvac-ar")["data"]["keys"]
    role_id = approle.read_role_id(role_name="worker", mount_point="hvac-ar")["data"]["role_id"]
    generated = approle.generate_secret_id(role_name="worker", metadata={"host": "build-7"},
                                           cidr_list=["127.0.0.1/32"], mount_point="hvac-ar")["data"]
    assert generated["secret_id_num_uses"] == 2 and generated["secret_id_ttl"] == 0, generated
    secret_id = generated["secret_id"]
    looked_up = approle.read_secret_id(role_name="worker", secret_id=secret_id, mount_point="hvac-ar")["data"]
    assert looked_up["metadata"] == {"host": "build-7"} and looked_up["cidr_list"] == ["127.0.0.1/32"], looked_up
    assert looked_up["secret_id_accessor"] == generated["secret_id_accessor"], looked_up

    machine = hvac.Client(url=ADDR)
    answer = machine.auth.approle.login(role_id=role_id, secret_id=secret_id, mount_point="hvac-ar")
    assert answer["auth"]["policies"] == ["default", "jobs", "reports"], answer
    assert answer["auth"]["metadata"] == {"role_name": "worker", "host": "build-7"}, answer
    assert answer["auth"]["lease_duration"] == 1200, answer
    assert machine.token == answer["auth"]["client_token"] and machine.is_authenticated()
    assert machine.auth.token.lookup_self()["data"]["path"] == "auth/hvac-ar/login"
    raises(hvac.exceptions.InvalidRequest, hvac.Client(url=ADDR).auth.approle.login,
           role_id=role_id, secret_id="wrong", mount_point="hvac-ar")

    # A wrapped secret id, unwrapped by the machine; the second login spends the first's last use.
    wrapped = approle.generate_secret_id(role_name="worker", mount_point="hvac-ar", wrap_ttl="60s")
    wrapping_token = wrapped["wrap_info"]["token"]
    unwrapped = hvac.Client(url=ADDR, token=wrapping_token).sys.unwrap()["data"]
    hvac.Client(url=ADDR).auth.approle.login(role_id=role_id, secret_id=unwrapped["secret_id"],
                                             mount_point="hvac-ar")
    hvac.Client(url=ADDR).auth.approle.login(role_id=role_id, secret_id=secret_id, mount_point="hvac-ar")
    raises(hvac.exceptions.InvalidRequest, hvac.Client(url=ADDR).auth.approle.login,
           role_id=role_id, secret_id=secret_id, mount_point="hvac-ar")
    approle.delete_role(role_name="worker", mount_point="hvac-ar")
    client.sys.disable_auth_method(path="hvac-ar")


@check
def acl_policies_limit_a_token():
    policy = 'path "secret/data/hvac-acl/+/*" {\n  capabilities = ["read"]\n}\n'
    client.sys.create_or_update_policy(name="hvac-reader", policy=policy)
    assert "hvac-reader" in client.sys.list_policies()["data"]["policies"]
    assert client.sys.read_policy(name="hvac-reader")["data"]["rules"] == policy
    client.sys.create_or_update_acl_policy(name="hvac-acl", policy='path "sys/policy" { capabilities = ["list"] }')
    assert "hvac-acl" in client.sys.list_acl_policies()["data"]["keys"]
    assert "sys/policy" in client.sys.read_acl_policy(name="hvac-acl")["data"]["policy"]
    client.secrets.kv.v2.create_or_update_secret(path="hvac-acl/app/db", secret={"password": "p"}, mount_point="secret")
    token = client.auth.token.create(policies=["hvac-reader"], ttl="10m")["auth"]["client_token"]
    reader = hvac.Client(url=ADDR, token=token)
    secret = reader.secrets.kv.v2.read_secret_version(path="hvac-acl/app/db", mount_point="secret",
                                                      raise_on_deleted_version=True)
    assert secret["data"]["data"] == {"password": "p"}, secret
    raises(hvac.exceptions.Forbidden, reader.secrets.kv.v2.create_or_update_secret,
           path="hvac-acl/app/db", secret={"password": "q"}, mount_point="secret")
    raises(hvac.exceptions.Forbidden, reader.secrets.kv.v2.read_secret_version,
           path="hvac-acl/db", mount_point="secret", raise_on_deleted_version=True)
    capabilities = client.sys.get_capabilities(paths=["secret/data/hvac-acl/app/db"], token=token)
    assert capabilities["capabilities"] == ["read"], capabilities
    client.auth.token.revoke(token)
    client.sys.delete_policy(name="hvac-reader")
    client.sys.delete_acl_policy(name="hvac-acl")
    assert "hvac-reader" not in client.sys.list_policies()["data"]["policies"]


@check
def bad_input_is_400():
    raises(hvac.exceptions.InvalidRequest, client.adapter.post, "/v1/secret/data/hvac/bad", json={"data": "not-an-object"})
    raises(hvac.exceptions.InvalidRequest, client.adapter.post, "/v1/secret/data/a/%2E%2E/b", json={"data": {}})


def main():
    passed = failed = 0
    for function in checks:
        try:
            function()
            passed += 1
            print(f"ok   {function.__name__}")
        except Exception:
            failed += 1
            print(f"FAIL {function.__name__}")
            traceback.print_exc(file=sys.stdout)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
