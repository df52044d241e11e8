//! TLS by rustls (1.2 and 1.3) with aws-lc-rs: the server identity, and optional client
//! certificates that must chain to the configured CA.

use std::sync::Arc;

use anyhow::Context;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsSettings;

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

pub fn server_config(settings: &TlsSettings) -> anyhow::Result<rustls::ServerConfig> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&settings.cert)
        .with_context(|| format!("reading {}", settings.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing {}", settings.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&settings.key)
        .with_context(|| format!("reading {}", settings.key.display()))?;
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&settings.client_ca)
        .with_context(|| format!("reading {}", settings.client_ca.display()))?
    {
        roots
            .add(ca.context("parsing client CA")?)
            .context("adding client CA")?;
    }
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .context("building the client certificate verifier")?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .context("server certificate and key")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
