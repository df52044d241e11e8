//! Keys: the gateway's own ES384 keys (the token-signing key with its JWKS, and the separate
//! audit key that signs audit checkpoints only), and each registered client's public key, taken
//! from its certificate.

use std::path::Path;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

/// One of the gateway's ES384 signing keys (the token key or the audit key).
pub struct GatewayKey {
    pub kid: String,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    x: String,
    y: String,
}

/// File name of the generated token signing key inside the data directory.
pub const SIGNING_KEY_FILE: &str = "gateway-signing-key.pem";
/// File name of the generated audit key (checkpoints only) inside the data directory.
pub const AUDIT_KEY_FILE: &str = "audit-signing-key.pem";

impl GatewayKey {
    /// Loads the token signing key at `path`, or, when `path` is `None`, the one kept in
    /// `data_dir` (generating it on first start).
    pub fn load_or_generate(path: Option<&Path>, data_dir: &Path) -> anyhow::Result<GatewayKey> {
        GatewayKey::load_or_generate_file(path, data_dir, SIGNING_KEY_FILE)
    }

    /// Loads the key at `path`, or, when `path` is `None`, the file `file` kept in `data_dir`
    /// (generating it on first start).
    pub fn load_or_generate_file(
        path: Option<&Path>,
        data_dir: &Path,
        file: &str,
    ) -> anyhow::Result<GatewayKey> {
        let pem = match path {
            Some(p) => std::fs::read_to_string(p)
                .with_context(|| format!("reading signing key {}", p.display()))?,
            None => {
                let p = data_dir.join(file);
                if p.exists() {
                    std::fs::read_to_string(&p)
                        .with_context(|| format!("reading signing key {}", p.display()))?
                } else {
                    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
                        .context("generating a gateway signing key")?;
                    let pem = key.serialize_pem();
                    std::fs::create_dir_all(data_dir)?;
                    write_private(&p, &pem)?;
                    pem
                }
            }
        };
        GatewayKey::from_pem(&pem)
    }

    /// Loads the token signing key without generating one (for verification tools).
    pub fn load_existing(
        path: Option<&Path>,
        data_dir: &Path,
    ) -> anyhow::Result<Option<GatewayKey>> {
        GatewayKey::load_existing_file(path, data_dir, SIGNING_KEY_FILE)
    }

    /// Loads the key at `path` (or the file `file` in `data_dir`) without generating one.
    pub fn load_existing_file(
        path: Option<&Path>,
        data_dir: &Path,
        file: &str,
    ) -> anyhow::Result<Option<GatewayKey>> {
        let p = path
            .map(Path::to_path_buf)
            .unwrap_or_else(|| data_dir.join(file));
        if !p.exists() {
            return Ok(None);
        }
        let pem = std::fs::read_to_string(&p)
            .with_context(|| format!("reading signing key {}", p.display()))?;
        GatewayKey::from_pem(&pem).map(Some)
    }

    pub fn from_pem(pem: &str) -> anyhow::Result<GatewayKey> {
        let pair = rcgen::KeyPair::from_pem(pem).context("parsing the gateway signing key")?;
        if pair.algorithm() != &rcgen::PKCS_ECDSA_P384_SHA384 {
            anyhow::bail!("the gateway signing key must be an EC P-384 key");
        }
        let point = pair.public_key_raw();
        if point.len() != 97 || point[0] != 4 {
            anyhow::bail!("unexpected P-384 public key encoding");
        }
        let x = URL_SAFE_NO_PAD.encode(&point[1..49]);
        let y = URL_SAFE_NO_PAD.encode(&point[49..97]);
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, point);
        let kid = URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16]);
        Ok(GatewayKey {
            kid,
            encoding: EncodingKey::from_ec_pem(pem.as_bytes()).context("loading signing key")?,
            decoding: DecodingKey::from_ec_der(point),
            x,
            y,
        })
    }

    /// The public key as a JWK Set.
    pub fn jwks(&self) -> Value {
        json!({"keys": [{
            "kty": "EC", "crv": "P-384", "use": "sig", "alg": "ES384",
            "kid": self.kid, "x": self.x, "y": self.y
        }]})
    }
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

/// A client's verification key and the one algorithm it may sign with.
pub struct ClientKey {
    pub algorithm: Algorithm,
    pub key: DecodingKey,
    /// Subject organisation (O) of the registered certificate.
    pub organisation: Option<String>,
}

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";

impl ClientKey {
    /// Reads the public key from a PEM certificate: EC keys verify ES384, RSA keys RS384.
    pub fn from_certificate_file(path: &Path) -> anyhow::Result<ClientKey> {
        let der = CertificateDer::from_pem_file(path)
            .with_context(|| format!("reading certificate {}", path.display()))?;
        ClientKey::from_certificate_der(&der)
    }

    pub fn from_certificate_der(der: &[u8]) -> anyhow::Result<ClientKey> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| anyhow::anyhow!("parsing certificate: {e}"))?;
        let spki = cert.public_key();
        let raw = spki.subject_public_key.data.as_ref();
        let oid = spki.algorithm.algorithm.to_id_string();
        let (algorithm, key) = match oid.as_str() {
            OID_EC_PUBLIC_KEY => (Algorithm::ES384, DecodingKey::from_ec_der(raw)),
            OID_RSA_ENCRYPTION => (Algorithm::RS384, DecodingKey::from_rsa_der(raw)),
            other => anyhow::bail!("unsupported client key algorithm {other}"),
        };
        Ok(ClientKey {
            algorithm,
            key,
            organisation: certificate_organisation(der),
        })
    }
}

/// The subject organisation (O) of a DER certificate.
pub fn certificate_organisation(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let org = cert
        .subject()
        .iter_organization()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    Some(org)
}
