//! The ceiling of an HTTP answer on this machine: `POST /verify` answered with a fixed small JSON
//! body (`{"valid":true,"code":"VALID"}`) through the same listener, axum, hyper and tokio
//! runtime as `custos server`, with no engine behind it. `scripts/bench_apikeys.py` runs wrk
//! against it and against custos's `/v1/apikeys/verify` in the same run, so the ratio says how
//! much of the verify latency is custos's own work.
//!
//! Usage: `cargo run --release -p custos-server --example bench_ceiling -- [--addr IP:PORT]`
//! (default `127.0.0.1:0`); prints `bench_ceiling: listening on http://ADDRESS` once bound and
//! runs until it is killed or gets Ctrl-C.

use std::net::SocketAddr;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;

/// The whole answer: what a valid verify says, without the key's attributes.
const VALID: &str = r#"{"valid":true,"code":"VALID"}"#;

async fn verify(body: axum::body::Bytes) -> impl IntoResponse {
    // The body is read (as custos reads it) and dropped.
    drop(body);
    ([(header::CONTENT_TYPE, "application/json")], VALID)
}

/// `--addr IP:PORT`, or the default.
fn address(args: &[String]) -> Result<SocketAddr, String> {
    match args {
        [] => Ok(SocketAddr::from(([127, 0, 0, 1], 0))),
        [flag, value] if flag == "--addr" => value
            .parse()
            .map_err(|error| format!("invalid --addr {value:?}: {error}")),
        _ => Err("usage: bench_ceiling [--addr IP:PORT]".into()),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let address = match address(&args) {
        Ok(address) => address,
        Err(message) => {
            eprintln!("{message}");
            return std::process::ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("cannot bind {address}: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let bound = match listener.local_addr() {
        Ok(bound) => bound,
        Err(error) => {
            eprintln!("cannot read the bound address: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("bench_ceiling: listening on http://{bound}");
    let app = Router::new().route("/verify", post(verify));
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match custos_server::serve(
        listener,
        app,
        custos_server::ServeOptions::default(),
        shutdown,
    )
    .await
    {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("serve failed: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
