//! `throughcare certs generate`: a development CA, a server certificate for `localhost` and
//! `127.0.0.1`, and client certificates for the sample organisations; `throughcare certs
//! issue-client`: one more client certificate signed by an existing development CA, leaving the
//! others as they are. For development only.

use std::path::Path;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// A sample client: its id (file name), ODS code and a description.
pub struct SampleClient {
    pub id: &'static str,
    pub ods: &'static str,
    pub organisation: &'static str,
}

/// The sample organisations registered in the example configuration.
/// `Y02307` is the ODS code of the healthcare unit at HMP Bristol (prison register in the corpus);
/// the others are made up for development (`X99003` is the gateway operator, role `admin`).
pub const SAMPLE_CLIENTS: &[SampleClient] = &[
    SampleClient {
        id: "prison",
        ods: "Y02307",
        organisation: "HMP Bristol Healthcare",
    },
    SampleClient {
        id: "gp",
        ods: "A99001",
        organisation: "Sample Community GP Practice",
    },
    SampleClient {
        id: "icb",
        ods: "Q99",
        organisation: "Sample Integrated Care Board",
    },
    SampleClient {
        id: "drug-service",
        ods: "X99001",
        organisation: "Sample Drug and Alcohol Service",
    },
    SampleClient {
        id: "auditor",
        ods: "X99002",
        organisation: "Sample Information Governance Office",
    },
    SampleClient {
        id: "admin",
        ods: "X99003",
        organisation: "Sample Gateway Operator",
    },
];

const NOTICE: &str = "# Development only\n\n\
These certificates and keys are EXAMPLES for development and tests. They are public: never use\n\
them to protect real patient data. Regenerate them all with:\n\n\
\x20   cargo run -- certs generate --out certs-example\n\n\
or add one client certificate signed by the existing CA, leaving the others as they are:\n\n\
\x20   cargo run -- certs issue-client --ca-dir certs-example --id admin --ods X99003 \\\n\
\x20       --organisation \"Sample Gateway Operator\"\n\n\
- `ca.crt`, `ca.key`: the development CA that signs everything here.\n\
- `server.crt`, `server.key`: the gateway, for `localhost` and `127.0.0.1`.\n\
- `clients/<name>.crt`, `clients/<name>.key`: sample clients (PKCS#8 PEM, EC P-384). The\n\
\x20 certificate's subject O is the organisation's ODS code and CN the client id; the gateway\n\
\x20 checks O against the access token's organisation when a client presents its certificate.\n\
\x20 `admin` (X99003) is the gateway operator: the only role that writes agreements.\n";

fn key() -> anyhow::Result<KeyPair> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).context("generating a P-384 key")
}

fn validity(params: &mut CertificateParams, years: i64) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(365 * years);
}

fn write(dir: &Path, name: &str, contents: &str) -> anyhow::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))
}

/// The development CA's parameters (its subject is what the certificates it signs name as
/// their issuer).
fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        "Throughcare Development CA (NOT FOR PRODUCTION)",
    );
    dn.push(DnType::OrganizationName, "Throughcare development");
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut ca, 20);
    Ok(ca)
}

/// A client certificate (subject CN the client id, O its ODS code) and its key, both PEM.
fn client_certificate(
    id: &str,
    ods: &str,
    organisation: &str,
    issuer: &Issuer<'_, KeyPair>,
) -> anyhow::Result<(String, String)> {
    let client_key = key()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, id);
    dn.push(DnType::OrganizationName, ods);
    dn.push(DnType::OrganizationalUnitName, organisation);
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    validity(&mut params, 10);
    let cert = params.signed_by(&client_key, issuer)?;
    Ok((cert.pem(), client_key.serialize_pem()))
}

/// Issues one more development client certificate with the development CA whose key is
/// `ca_key_pem` (for tests and local set-ups that need an organisation beyond the samples).
/// Returns the certificate and its key, PEM.
pub fn issue_client(
    ca_key_pem: &str,
    id: &str,
    ods: &str,
    organisation: &str,
) -> anyhow::Result<(String, String)> {
    let ca_key = KeyPair::from_pem(ca_key_pem).context("reading the development CA key")?;
    let issuer = Issuer::new(ca_params()?, ca_key);
    client_certificate(id, ods, organisation, &issuer)
}

/// Writes a fresh development PKI into `out`.
pub fn generate(out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out.join("clients"))?;

    let ca_key = key()?;
    let ca = ca_params()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    write(out, "ca.crt", &ca_cert.pem())?;
    write(out, "ca.key", &ca_key.serialize_pem())?;
    let issuer = Issuer::new(ca, ca_key);

    let server_key = key()?;
    let mut server = CertificateParams::new(vec!["localhost".to_string()])?;
    server
        .subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "localhost");
    dn.push(DnType::OrganizationName, "Throughcare development gateway");
    server.distinguished_name = dn;
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    validity(&mut server, 10);
    let server_cert = server.signed_by(&server_key, &issuer)?;
    write(out, "server.crt", &server_cert.pem())?;
    write(out, "server.key", &server_key.serialize_pem())?;

    for client in SAMPLE_CLIENTS {
        let (cert, client_key) =
            client_certificate(client.id, client.ods, client.organisation, &issuer)?;
        write(&out.join("clients"), &format!("{}.crt", client.id), &cert)?;
        write(
            &out.join("clients"),
            &format!("{}.key", client.id),
            &client_key,
        )?;
    }
    write(out, "README.md", NOTICE)?;
    Ok(())
}

/// Issues one client certificate signed by the development CA in `ca_dir` (`ca.crt`, `ca.key`)
/// into `ca_dir/clients`, leaving every other certificate as it is. Refuses to overwrite an
/// existing certificate or key of that client.
pub fn issue_client_files(
    ca_dir: &Path,
    id: &str,
    ods: &str,
    organisation: &str,
) -> anyhow::Result<()> {
    crate::domain::OdsCode::parse(ods).map_err(anyhow::Error::msg)?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        anyhow::bail!("the client id must be letters, digits and hyphens");
    }
    let read = |name: &str| {
        let path = ca_dir.join(name);
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    };
    let ca_key = KeyPair::from_pem(&read("ca.key")?).context("parsing the CA key")?;
    let issuer =
        Issuer::from_ca_cert_pem(&read("ca.crt")?, ca_key).context("parsing the CA certificate")?;
    let dir = ca_dir.join("clients");
    std::fs::create_dir_all(&dir)?;
    for file in [format!("{id}.crt"), format!("{id}.key")] {
        if dir.join(&file).exists() {
            anyhow::bail!("{} exists: not overwritten", dir.join(&file).display());
        }
    }
    let (cert, client_key) = client_certificate(id, ods, organisation, &issuer)?;
    write(&dir, &format!("{id}.crt"), &cert)?;
    write(&dir, &format!("{id}.key"), &client_key)
}
