//! `custos operator generate-root`: a quorum of unseal key holders makes a new root token, with
//! Vault's one-time-password flow (`bao operator generate-root` works against custos too).

use std::io::Read as _;
use std::process::ExitCode;

use anyhow::{Context, bail};
use base64::Engine as _;
use custos_api::sys::GenerateRootStatusResponse;
use custos_client::Client;
use zeroize::Zeroizing;

use crate::operator::{Format, print_json, print_table, read_key_from_user};

/// Generates a new root token from a quorum of unseal key shares.
///
/// One operator starts an attempt (`--init`); the server generates a one-time password (OTP)
/// and shows it once, or takes one given with `--otp`. Each key holder then runs the command
/// with their share (prompted without echo when not given). When the threshold is reached the
/// answer holds the new root token XOR'd with the OTP (`Encoded Token`): only the OTP's holder
/// reads it, with `--decode ENCODED --otp OTP`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct GenerateRootArgs {
    /// The unseal key share (hex or base64); `-` reads it from standard input. Without it,
    /// prompts for it without echo.
    key: Option<String>,
    /// Start an attempt (with `--otp`, or with an OTP the server generates and shows once).
    #[arg(long, conflicts_with_all = ["cancel", "status", "decode", "generate_otp"])]
    init: bool,
    /// Cancel the attempt in progress, discarding the shares submitted so far.
    #[arg(long, conflicts_with_all = ["status", "decode", "generate_otp"])]
    cancel: bool,
    /// Show the attempt in progress without submitting a share.
    #[arg(long, conflicts_with_all = ["decode", "generate_otp"])]
    status: bool,
    /// Decode an encoded root token (`-` reads it from standard input); needs `--otp`.
    #[arg(long, value_name = "ENCODED", requires = "otp")]
    decode: Option<String>,
    /// Generate and print an OTP of the length the server needs, for `--init --otp`.
    #[arg(long)]
    generate_otp: bool,
    /// The OTP, for `--init` and `--decode`.
    #[arg(long, value_name = "OTP", hide_env_values = true)]
    otp: Option<String>,
    /// The attempt's nonce, as `--init` or `--status` showed it (default: the current one).
    #[arg(long)]
    nonce: Option<String>,
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A random base62 string of `length` characters, uniformly drawn.
pub(crate) fn random_otp(length: usize) -> anyhow::Result<Zeroizing<String>> {
    let mut otp = Zeroizing::new(String::with_capacity(length));
    let mut random = Zeroizing::new([0u8; 64]);
    while otp.len() < length {
        custos_crypto::fill_random(random.as_mut()).context("cannot read random bytes")?;
        for byte in random.iter().filter(|byte| **byte < 248) {
            if otp.len() == length {
                break;
            }
            otp.push(char::from(BASE62[usize::from(*byte % 62)]));
        }
    }
    Ok(otp)
}

/// Reverses the server's encoding: unpadded (or padded) base64, XOR'd with the OTP.
pub(crate) fn decode_token(encoded: &str, otp: &str) -> anyhow::Result<Zeroizing<String>> {
    let encoded = encoded.trim();
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(encoded.trim_end_matches('='))
        .context("the encoded token is not base64")?;
    if bytes.len() != otp.len() {
        bail!(
            "the encoded token is {} bytes and the OTP {}: is this the OTP of this attempt?",
            bytes.len(),
            otp.len()
        );
    }
    let token: Vec<u8> = bytes
        .iter()
        .zip(otp.as_bytes())
        .map(|(a, b)| a ^ b)
        .collect();
    String::from_utf8(token)
        .map(Zeroizing::new)
        .map_err(|_| anyhow::anyhow!("decoding gave no token: is this the OTP of this attempt?"))
}

fn read_stdin(what: &str) -> anyhow::Result<Zeroizing<String>> {
    let mut text = Zeroizing::new(String::new());
    std::io::stdin()
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read the {what} from standard input"))?;
    Ok(Zeroizing::new(text.trim().to_owned()))
}

fn print_status(status: &GenerateRootStatusResponse, format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        return print_json(status);
    }
    let mut rows = vec![
        ("Nonce", status.nonce.clone()),
        ("Started", status.started.to_string()),
        (
            "Progress",
            format!("{}/{}", status.progress, status.required),
        ),
        ("Complete", status.complete.to_string()),
    ];
    if !status.encoded_token.is_empty() {
        rows.push(("Encoded Token", status.encoded_token.clone()));
    }
    if !status.otp.is_empty() {
        eprintln!(
            "A one-time password (OTP) has been generated for you and is shown in the OTP field.\n\
             You need it to decode the new root token, so keep it safe; it is not shown again."
        );
        rows.push(("OTP", status.otp.clone()));
    }
    if status.otp_length != 0 {
        rows.push(("OTP Length", status.otp_length.to_string()));
    }
    print_table(&rows);
    if status.complete {
        eprintln!(
            "\nDecode the token with: custos operator generate-root --decode {} --otp <OTP>",
            status.encoded_token
        );
    }
    Ok(())
}

pub(crate) async fn run(
    args: GenerateRootArgs,
    client: &Client,
    format: Format,
) -> anyhow::Result<ExitCode> {
    if let Some(encoded) = &args.decode {
        let otp = args.otp.as_deref().unwrap_or_default();
        let encoded = if encoded == "-" {
            read_stdin("encoded token")?
        } else {
            Zeroizing::new(encoded.clone())
        };
        let token = decode_token(&encoded, otp)?;
        if format == Format::Json {
            print_json(&serde_json::json!({ "token": token.as_str() }))?;
        } else {
            println!("{}", token.as_str());
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.generate_otp {
        let length = client.generate_root_status().await?.otp_length;
        if length == 0 {
            bail!("the server did not say how long an OTP must be");
        }
        let otp = random_otp(length as usize)?;
        if format == Format::Json {
            print_json(&serde_json::json!({ "otp": otp.as_str(), "otp_length": length }))?;
        } else {
            println!("{}", otp.as_str());
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.cancel {
        client.generate_root_cancel().await?;
        if format == Format::Json {
            print_json(&serde_json::json!({ "cancelled": true }))?;
        } else {
            println!("Success! Root token generation canceled (if it was started)");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.init {
        let otp = Zeroizing::new(args.otp.clone().unwrap_or_default());
        let status = client.generate_root_init(&otp).await?;
        print_status(&status, format)?;
        return Ok(ExitCode::SUCCESS);
    }
    let status = client.generate_root_status().await?;
    if args.status {
        print_status(&status, format)?;
        return Ok(ExitCode::SUCCESS);
    }
    if !status.started {
        bail!(
            "no root generation is in progress: start one with `custos operator generate-root --init`"
        );
    }
    let key = match args.key.as_deref() {
        Some("-") => read_stdin("unseal key")?,
        Some(key) => Zeroizing::new(key.trim().to_owned()),
        None => {
            eprintln!("Operation nonce: {}", status.nonce);
            Zeroizing::new(read_key_from_user()?)
        }
    };
    if key.is_empty() {
        bail!("no unseal key given");
    }
    let nonce = args.nonce.unwrap_or(status.nonce);
    let status = client.generate_root_update(&key, &nonce).await?;
    print_status(&status, format)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests;
