//! Prints a SMART Backend Services client assertion for use with curl:
//! `cargo run -q --example sign-assertion -- <client-id> <key.pem> <token-url>`.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [client_id, key_path, token_url] = args.as_slice() else {
        eprintln!("usage: sign-assertion <client-id> <key.pem> <token-url>");
        return std::process::ExitCode::FAILURE;
    };
    let key = match std::fs::read(key_path) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("cannot read {key_path}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    match throughcare::client::sign_assertion(client_id, &key, token_url, now) {
        Ok(assertion) => {
            println!("{assertion}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
