//! [`MeshClient`]: the MESH API calls the gateway makes, over its own reqwest client (timeouts,
//! no redirects, the configured CA and client certificate), every request signed with a fresh
//! `NHSMESH` header and asking for API v2 (`Accept: application/vnd.mesh.v2+json`).

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use super::auth::MeshAuth;
use super::{MeshError, MeshStatus};
use crate::config::MeshSettings;
use crate::transport::DeliveryOutcome;
use crate::transport::retry::parse_retry_after;

/// The API version every request asks for.
pub const ACCEPT_V2: &str = "application/vnd.mesh.v2+json";
/// What the handshake (and every request) says about this client.
pub const CLIENT_VERSION: &str = concat!("throughcare/", env!("CARGO_PKG_VERSION"));
/// The MESH default (and most) inbox page the client asks for.
const DEFAULT_INBOX_PAGE: u32 = 500;
/// A bound on inbox pages followed in one listing (500 ids each).
const MAX_INBOX_PAGES: usize = 100;
/// The longest MESH error text kept in a reason.
const MAX_REASON: usize = 300;

/// A message to send.
#[derive(Debug, Clone, Copy)]
pub struct OutboundMessage<'a> {
    /// The recipient mailbox (`Mex-To`).
    pub to: &'a str,
    /// `Mex-WorkflowID`, such as `TOC_FHIR_IP_DISCH`.
    pub workflow_id: &'a str,
    /// The bytes as the recipient will read them (compression and chunking are the client's).
    pub body: &'a [u8],
    /// `Mex-LocalID`: the sender's own reference (e.g. the delivery id), passed through.
    pub local_id: Option<&'a str>,
    /// `Mex-Subject`.
    pub subject: Option<&'a str>,
    /// `Mex-FileName`.
    pub file_name: Option<&'a str>,
    /// `Mex-Content-Type` (kept across chunking), such as `application/fhir+xml`.
    pub content_type: Option<&'a str>,
}

impl<'a> OutboundMessage<'a> {
    pub fn new(to: &'a str, workflow_id: &'a str, body: &'a [u8]) -> OutboundMessage<'a> {
        OutboundMessage {
            to,
            workflow_id,
            body,
            local_id: None,
            subject: None,
            file_name: None,
            content_type: None,
        }
    }
}

/// How a send went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    /// The MESH message id: what tracking, reports (`Mex-LinkedMsgID`) and the recipient see.
    pub message_id: String,
    /// Chunks uploaded (1 when not chunked).
    pub chunks: usize,
    /// Whether the body was gzip-compressed.
    pub compressed: bool,
}

/// `Mex-MessageType`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageType {
    Data,
    /// A MESH report (non-delivery, error): the status says what happened to the linked message.
    Report,
    Other(String),
}

/// A downloaded inbox message, its body whole (chunks joined, gzip undone).
#[derive(Debug, Clone)]
pub struct InboxMessage {
    pub message_id: String,
    pub message_type: MessageType,
    /// `Mex-From` (absent on reports from the central system).
    pub from: Option<String>,
    pub to: Option<String>,
    pub workflow_id: Option<String>,
    pub local_id: Option<String>,
    pub subject: Option<String>,
    pub file_name: Option<String>,
    /// `Mex-Content-Type`.
    pub content_type: Option<String>,
    /// Whether the body came gzip-compressed (and was decompressed here).
    pub compressed: bool,
    /// Chunks downloaded.
    pub chunks: usize,
    /// The `Mex-Status*` headers and `Mex-LinkedMsgID`.
    pub status: MeshStatus,
    pub body: Vec<u8>,
}

impl InboxMessage {
    pub fn is_report(&self) -> bool {
        self.message_type == MessageType::Report
    }

    /// For a REPORT: its status (code, description, linked message id).
    pub fn report(&self) -> Option<&MeshStatus> {
        self.is_report().then_some(&self.status)
    }
}

/// A mailbox found by endpoint lookup.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LookupResult {
    pub mailbox_id: String,
    #[serde(default)]
    pub mailbox_name: Option<String>,
}

/// A sent message's tracking record (API v2), the fields the gateway reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Tracking {
    pub message_id: String,
    #[serde(default)]
    pub local_id: Option<String>,
    #[serde(default)]
    pub workflow_id: Option<String>,
    #[serde(default)]
    pub recipient: Option<String>,
    /// `uploading`, `accepted`, `acknowledged`, `undeliverable`, `error`, ...
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub status_success: Option<bool>,
    #[serde(default)]
    pub status_code: Option<String>,
    #[serde(default)]
    pub status_description: Option<String>,
    #[serde(default)]
    pub status_event: Option<String>,
}

/// An endpoint lookup answer and when it was fetched.
type CachedLookup = (Instant, Vec<LookupResult>);

/// The MESH API client of one mailbox.
pub struct MeshClient {
    http: reqwest::Client,
    base: reqwest::Url,
    auth: MeshAuth,
    chunk_size: usize,
    compress_above: usize,
    max_download: usize,
    inbox_page: u32,
    lookup_ttl: Duration,
    lookups: Mutex<HashMap<(String, String), CachedLookup>>,
    lookup_fetches: AtomicU64,
}

impl std::fmt::Debug for MeshClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshClient")
            .field("base", &self.base.as_str())
            .field("mailbox", &self.auth.mailbox())
            .finish_non_exhaustive()
    }
}

/// Builds the HTTP client for MESH like the gateway's other outbound clients: timeouts always,
/// no redirects, the configured CA and the mailbox's client certificate.
pub fn mesh_http_client(settings: &MeshSettings) -> anyhow::Result<reqwest::Client> {
    crate::transport::outbound_client(
        settings.timeout_secs,
        settings.ca.as_deref(),
        settings
            .client_cert
            .as_deref()
            .zip(settings.client_key.as_deref()),
        "MESH client",
    )
}

impl MeshClient {
    /// A client for the configured mailbox: reads the secrets (environment or files) and the
    /// certificates now.
    pub fn from_settings(settings: &MeshSettings) -> anyhow::Result<MeshClient> {
        let password = settings.password()?;
        let shared_key = settings.shared_key()?;
        let mut base = reqwest::Url::parse(&settings.url)
            .with_context(|| format!("mesh.url {:?}", settings.url))?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        Ok(MeshClient {
            http: mesh_http_client(settings)?,
            base,
            auth: MeshAuth::new(&settings.mailbox, password.expose(), shared_key.expose()),
            chunk_size: settings.chunk_size_bytes.max(1),
            compress_above: settings.compress_above_bytes,
            max_download: settings.max_download_bytes,
            inbox_page: DEFAULT_INBOX_PAGE,
            lookup_ttl: Duration::from_secs(settings.lookup_cache_secs),
            lookups: Mutex::new(HashMap::new()),
            lookup_fetches: AtomicU64::new(0),
        })
    }

    /// Asks for inbox pages of `size` ids (MESH allows 10 to 5000; default 500).
    pub fn with_inbox_page_size(mut self, size: u32) -> MeshClient {
        self.inbox_page = size.clamp(10, 5000);
        self
    }

    pub fn mailbox(&self) -> &str {
        self.auth.mailbox()
    }

    /// How many endpoint lookups reached the server (the rest were answered from the cache).
    pub fn lookup_fetches(&self) -> u64 {
        self.lookup_fetches.load(Ordering::Relaxed)
    }

    fn url(&self, path: &str) -> Result<reqwest::Url, MeshError> {
        self.base
            .join(&format!("messageexchange/{path}"))
            .map_err(|e| MeshError::Config(format!("MESH URL for {path}: {e}")))
    }

    fn mailbox_url(&self, rest: &str) -> Result<reqwest::Url, MeshError> {
        let mailbox = urlencoding::encode(self.auth.mailbox());
        if rest.is_empty() {
            self.url(&mailbox)
        } else {
            self.url(&format!("{mailbox}/{rest}"))
        }
    }

    /// A request with a fresh `NHSMESH` header, API v2, and the client's identification.
    fn request(&self, method: Method, url: reqwest::Url) -> reqwest::RequestBuilder {
        let now = time::OffsetDateTime::now_utc();
        self.http
            .request(method, url)
            .header("Authorization", self.auth.header(now))
            .header("Accept", ACCEPT_V2)
            .header("Mex-ClientVersion", CLIENT_VERSION)
            .header("Mex-OSName", std::env::consts::OS)
            .header("Mex-OSVersion", os_version())
            .header("Mex-OSArchitecture", std::env::consts::ARCH)
    }

    /// `POST /messageexchange/{mailbox}`: checks the credentials and the connection.
    pub async fn handshake(&self) -> Result<(), MeshError> {
        let response = self
            .request(Method::POST, self.mailbox_url("")?)
            .send()
            .await
            .map_err(send_error)?;
        check(response).await.map(drop)
    }

    /// Sends a message: gzip above the compression threshold, chunks above the chunk size
    /// (the first to `outbox` with `Mex-Chunk-Range: 1:N`, the rest to
    /// `outbox/{message_id}/{n}`). A failure part way leaves an unfinished upload that MESH
    /// expires; a retry sends the whole message again under a new message id.
    pub async fn send(&self, message: &OutboundMessage<'_>) -> Result<SentMessage, MeshError> {
        let compressed = message.body.len() > self.compress_above;
        let payload = if compressed {
            gzip(message.body)?
        } else {
            message.body.to_vec()
        };
        let parts: Vec<&[u8]> = if payload.is_empty() {
            vec![&payload[..]]
        } else {
            payload.chunks(self.chunk_size).collect()
        };
        let total = parts.len();

        let mut headers = HeaderMap::new();
        put(&mut headers, "Mex-From", self.auth.mailbox())?;
        put(&mut headers, "Mex-To", message.to)?;
        put(&mut headers, "Mex-WorkflowID", message.workflow_id)?;
        for (name, value) in [
            ("Mex-LocalID", message.local_id),
            ("Mex-Subject", message.subject),
            ("Mex-FileName", message.file_name),
            ("Mex-Content-Type", message.content_type),
        ] {
            if let Some(value) = value {
                put(&mut headers, name, value)?;
            }
        }
        let content_type = match (total, message.content_type) {
            (1, Some(ct)) => ct,
            _ => "application/octet-stream",
        };
        put(&mut headers, "Content-Type", content_type)?;
        if compressed {
            put(&mut headers, "Content-Encoding", "gzip")?;
            put(&mut headers, "Mex-Content-Compressed", "Y")?;
        }
        if total > 1 {
            put(&mut headers, "Mex-Chunk-Range", &format!("1:{total}"))?;
        }
        let response = self
            .request(Method::POST, self.mailbox_url("outbox")?)
            .headers(headers)
            .body(parts[0].to_vec())
            .send()
            .await
            .map_err(send_error)?;
        let body: Value = check(response)
            .await?
            .json()
            .await
            .map_err(|e| MeshError::Protocol(format!("reading the send answer: {e}")))?;
        let message_id = body
            .get("message_id")
            .or_else(|| body.get("messageID"))
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| {
                MeshError::Protocol(format!("the send answer has no message_id: {body}"))
            })?
            .to_string();

        for (index, part) in parts.iter().enumerate().skip(1) {
            let number = index + 1;
            let mut headers = HeaderMap::new();
            put(&mut headers, "Content-Type", "application/octet-stream")?;
            put(
                &mut headers,
                "Mex-Chunk-Range",
                &format!("{number}:{total}"),
            )?;
            if compressed {
                put(&mut headers, "Content-Encoding", "gzip")?;
            }
            let path = format!("outbox/{}/{number}", urlencoding::encode(&message_id));
            let response = self
                .request(Method::POST, self.mailbox_url(&path)?)
                .headers(headers)
                .body(part.to_vec())
                .send()
                .await
                .map_err(send_error)?;
            check(response).await?;
        }
        Ok(SentMessage {
            message_id,
            chunks: total,
            compressed,
        })
    }

    /// Sends and says how it ended, as a delivery outcome: what a `Transport` returns.
    pub async fn deliver(&self, message: &OutboundMessage<'_>) -> DeliveryOutcome {
        super::send_outcome(&self.send(message).await)
    }

    /// `GET .../inbox`, following `links.next` page by page: the ids of the messages waiting.
    pub async fn list_inbox(&self) -> Result<Vec<String>, MeshError> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            messages: Vec<String>,
            #[serde(default)]
            links: HashMap<String, String>,
        }
        let mut url = self.mailbox_url("inbox")?;
        if self.inbox_page != DEFAULT_INBOX_PAGE {
            url.query_pairs_mut()
                .append_pair("max_results", &self.inbox_page.to_string());
        }
        let mut ids = Vec::new();
        for _ in 0..MAX_INBOX_PAGES {
            let response = self
                .request(Method::GET, url.clone())
                .send()
                .await
                .map_err(send_error)?;
            let page: Page = check(response)
                .await?
                .json()
                .await
                .map_err(|e| MeshError::Protocol(format!("reading the inbox: {e}")))?;
            ids.extend(page.messages);
            match page.links.get("next") {
                Some(next) => url = self.same_origin(&url, next)?,
                None => return Ok(ids),
            }
        }
        Ok(ids)
    }

    /// A `links.next` from MESH, resolved against the page it came from; only on the same
    /// origin (the authorisation header goes with it).
    fn same_origin(&self, from: &reqwest::Url, link: &str) -> Result<reqwest::Url, MeshError> {
        let next = from
            .join(link)
            .map_err(|e| MeshError::Protocol(format!("inbox link {link:?}: {e}")))?;
        if next.origin() != self.base.origin() {
            return Err(MeshError::Protocol(format!(
                "inbox link {link:?} leaves the MESH server"
            )));
        }
        Ok(next)
    }

    /// `GET .../inbox/{id}` (and `.../inbox/{id}/{n}` for the further chunks of a chunked
    /// message): the message with its headers, its body joined and decompressed, bounded by
    /// `max_download_bytes`.
    pub async fn download(&self, message_id: &str) -> Result<InboxMessage, MeshError> {
        let id = urlencoding::encode(message_id).into_owned();
        let response = self
            .request(Method::GET, self.mailbox_url(&format!("inbox/{id}"))?)
            .header("Accept-Encoding", "gzip")
            .send()
            .await
            .map_err(send_error)?;
        let response = check(response).await?;
        let headers = response.headers().clone();
        let transfer_gzip =
            header(&headers, "content-encoding").is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
        let total = header(&headers, "mex-chunk-range")
            .and_then(|r| parse_chunk_range(&r))
            .map_or(1, |(_, total)| total.max(1));
        let mut raw = Vec::new();
        read_bounded(response, &mut raw, self.max_download).await?;
        for number in 2..=total {
            let response = self
                .request(
                    Method::GET,
                    self.mailbox_url(&format!("inbox/{id}/{number}"))?,
                )
                .header("Accept-Encoding", "gzip")
                .send()
                .await
                .map_err(send_error)?;
            let response = check(response).await?;
            read_bounded(response, &mut raw, self.max_download).await?;
        }
        let declared_compressed =
            header(&headers, "mex-content-compressed").is_some_and(|v| v.eq_ignore_ascii_case("y"));
        // Content-Encoding: gzip is undone once over the joined chunks (a sender-compressed
        // message is one gzip stream cut into chunks; MESH compressing in transit makes one
        // gzip member per chunk: both read as one multi-member stream). A message flagged
        // Mex-Content-Compressed without Content-Encoding is gunzipped when it is gzip.
        let compressed = transfer_gzip || declared_compressed && raw.starts_with(&[0x1f, 0x8b]);
        let body = if compressed {
            gunzip(&raw, self.max_download)?
        } else {
            raw
        };
        let message_type = match header(&headers, "mex-messagetype").as_deref() {
            Some(t) if t.eq_ignore_ascii_case("DATA") => MessageType::Data,
            Some(t) if t.eq_ignore_ascii_case("REPORT") => MessageType::Report,
            Some(other) => MessageType::Other(other.to_string()),
            None => MessageType::Data,
        };
        Ok(InboxMessage {
            message_id: header(&headers, "mex-messageid").unwrap_or_else(|| message_id.into()),
            message_type,
            from: header(&headers, "mex-from"),
            to: header(&headers, "mex-to"),
            workflow_id: header(&headers, "mex-workflowid"),
            local_id: header(&headers, "mex-localid"),
            subject: header(&headers, "mex-subject"),
            file_name: header(&headers, "mex-filename"),
            content_type: header(&headers, "mex-content-type"),
            compressed,
            chunks: total,
            status: MeshStatus {
                success: header(&headers, "mex-statussuccess"),
                event: header(&headers, "mex-statusevent"),
                code: header(&headers, "mex-statuscode"),
                description: header(&headers, "mex-statusdescription"),
                linked_message_id: header(&headers, "mex-linkedmsgid"),
                timestamp: header(&headers, "mex-statustimestamp"),
            },
            body,
        })
    }

    /// `PUT .../inbox/{id}/status/acknowledged`: removes the message from the inbox (a
    /// transport step only; it says nothing of what the message said).
    pub async fn acknowledge(&self, message_id: &str) -> Result<(), MeshError> {
        let path = format!(
            "inbox/{}/status/acknowledged",
            urlencoding::encode(message_id)
        );
        let response = self
            .request(Method::PUT, self.mailbox_url(&path)?)
            .header("Content-Length", "0")
            .send()
            .await
            .map_err(send_error)?;
        check(response).await.map(drop)
    }

    /// `GET .../outbox/tracking?messageID=`: what became of a message this mailbox sent.
    pub async fn track(&self, message_id: &str) -> Result<Tracking, MeshError> {
        let mut url = self.mailbox_url("outbox/tracking")?;
        url.query_pairs_mut().append_pair("messageID", message_id);
        let response = self
            .request(Method::GET, url)
            .send()
            .await
            .map_err(send_error)?;
        check(response)
            .await?
            .json()
            .await
            .map_err(|e| MeshError::Protocol(format!("reading the tracking answer: {e}")))
    }

    /// `GET /messageexchange/endpointlookup/{ODS}/{WorkflowID}`: the mailboxes registered for
    /// the organisation and workflow, kept for `lookup_cache_secs` (an empty answer too;
    /// failures are not kept).
    pub async fn lookup(
        &self,
        ods: &str,
        workflow_id: &str,
    ) -> Result<Vec<LookupResult>, MeshError> {
        let key = (ods.to_ascii_uppercase(), workflow_id.to_string());
        if let Ok(cache) = self.lookups.lock()
            && let Some((at, results)) = cache.get(&key)
            && at.elapsed() < self.lookup_ttl
        {
            return Ok(results.clone());
        }
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            results: Vec<LookupResult>,
        }
        let url = self.url(&format!(
            "endpointlookup/{}/{}",
            urlencoding::encode(&key.0),
            urlencoding::encode(&key.1)
        ))?;
        self.lookup_fetches.fetch_add(1, Ordering::Relaxed);
        let response = self
            .request(Method::GET, url)
            .send()
            .await
            .map_err(send_error)?;
        let answer: Answer = check(response)
            .await?
            .json()
            .await
            .map_err(|e| MeshError::Protocol(format!("reading the lookup answer: {e}")))?;
        if let Ok(mut cache) = self.lookups.lock() {
            cache.retain(|_, (at, _)| at.elapsed() < self.lookup_ttl);
            cache.insert(key, (Instant::now(), answer.results.clone()));
        }
        Ok(answer.results)
    }
}

fn put(headers: &mut HeaderMap, name: &str, value: &str) -> Result<(), MeshError> {
    let value = HeaderValue::from_str(value)
        .map_err(|_| MeshError::Config(format!("{name} {value:?} is not a valid header value")))?;
    let name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| MeshError::Config(format!("{name:?} is not a header name")))?;
    headers.insert(name, value);
    Ok(())
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// `Mex-Chunk-Range: n:N` (reports say `1:0`).
pub fn parse_chunk_range(value: &str) -> Option<(usize, usize)> {
    let (n, total) = value.trim().split_once(':')?;
    Some((n.trim().parse().ok()?, total.trim().parse().ok()?))
}

fn os_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty() && v.is_ascii())
        .unwrap_or_else(|| "unknown".into())
}

fn gzip(body: &[u8]) -> Result<Vec<u8>, MeshError> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(body)
        .and_then(|()| encoder.finish())
        .map_err(|e| MeshError::Config(format!("compressing the message: {e}")))
}

/// Gunzips every member of `raw`, refusing more than `max` bytes out.
pub fn gunzip(raw: &[u8], max: usize) -> Result<Vec<u8>, MeshError> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(raw)
        .take(u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| MeshError::Protocol(format!("the message is not valid gzip: {e}")))?;
    if out.len() > max {
        return Err(MeshError::Protocol(format!(
            "the message is larger than {max} bytes once decompressed"
        )));
    }
    Ok(out)
}

async fn read_bounded(
    mut response: reqwest::Response,
    into: &mut Vec<u8>,
    max: usize,
) -> Result<(), MeshError> {
    while let Some(chunk) = response.chunk().await.map_err(send_error)? {
        if into.len() + chunk.len() > max {
            return Err(MeshError::Protocol(format!(
                "the message is larger than {max} bytes"
            )));
        }
        into.extend_from_slice(&chunk);
    }
    Ok(())
}

fn send_error(e: reqwest::Error) -> MeshError {
    if e.is_timeout() {
        MeshError::Timeout
    } else if e.is_builder() {
        MeshError::Config(e.to_string())
    } else {
        MeshError::Connect(error_chain(&e))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Passes a success through; turns a MESH error answer into a [`MeshError`].
async fn check(response: reqwest::Response) -> Result<reqwest::Response, MeshError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = response
        .headers()
        .get("Retry-After")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, time::OffsetDateTime::now_utc()));
    let mut text = Vec::new();
    let _ = read_bounded(response, &mut text, 64 * 1024).await;
    Err(error_from_answer(
        status,
        retry_after,
        &String::from_utf8_lossy(&text),
    ))
}

/// What a MESH error answer means: 408, 429 and 5xx are worth retrying; 403 is the mailbox's
/// credentials; any other 4xx is MESH refusing the request, with its error code when the body
/// carries one (v2 `{"detail":[{"event","code","msg"}]}` or v1
/// `{"errorEvent","errorCode","errorDescription"}`).
pub fn error_from_answer(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &str,
) -> MeshError {
    let code = status.as_u16();
    let parsed = serde_json::from_str::<Value>(body).ok();
    let (event, mesh_code, message) = parsed.as_ref().map_or((None, None, None), mesh_error);
    let message = message.unwrap_or_else(|| truncate(body.trim()));
    if code == 408 || code == 429 || status.is_server_error() {
        return MeshError::Unavailable {
            status: code,
            retry_after,
            detail: message,
        };
    }
    if code == 401 || code == 403 {
        return MeshError::AuthRejected {
            status: code,
            detail: message,
        };
    }
    MeshError::Refused {
        status: code,
        event,
        code: mesh_code,
        message,
    }
}

fn mesh_error(body: &Value) -> (Option<String>, Option<String>, Option<String>) {
    let text = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(truncate)
    };
    if let Some(first) = body
        .get("detail")
        .and_then(Value::as_array)
        .and_then(|d| d.first())
    {
        return (
            text(first.get("event")),
            text(first.get("code")),
            text(first.get("msg")),
        );
    }
    if body.get("errorDescription").is_some() || body.get("errorCode").is_some() {
        return (
            text(body.get("errorEvent")),
            text(body.get("errorCode")),
            text(body.get("errorDescription")),
        );
    }
    (
        None,
        None,
        text(body.get("detail")).or(text(body.get("message"))),
    )
}

fn truncate(s: &str) -> String {
    if s.len() <= MAX_REASON {
        return s.to_string();
    }
    let mut end = MAX_REASON;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_ranges_are_read() {
        assert_eq!(parse_chunk_range("1:3"), Some((1, 3)));
        assert_eq!(parse_chunk_range(" 2 : 5 "), Some((2, 5)));
        assert_eq!(parse_chunk_range("1:0"), Some((1, 0)));
        assert_eq!(parse_chunk_range("x"), None);
    }

    #[test]
    fn gzip_round_trips_across_members_and_is_bounded() {
        let a = gzip(b"hello ").unwrap();
        let b = gzip(b"world").unwrap();
        let joined = [a.clone(), b].concat();
        assert_eq!(gunzip(&joined, 100).unwrap(), b"hello world");
        // A stream cut in two and joined again is the same stream.
        let big = vec![b'x'; 100_000];
        let z = gzip(&big).unwrap();
        let (first, second) = z.split_at(z.len() / 2);
        assert_eq!(gunzip(&[first, second].concat(), 100_000).unwrap(), big);
        assert!(matches!(
            gunzip(&z, 99_999),
            Err(MeshError::Protocol(m)) if m.contains("larger than")
        ));
        assert!(gunzip(b"not gzip", 100).is_err());
    }

    #[test]
    fn mesh_error_answers_are_read_with_their_codes() {
        let unregistered = error_from_answer(
            StatusCode::EXPECTATION_FAILED,
            None,
            r#"{"detail":[{"event":"SEND","code":"12","msg":"Unregistered to address"}]}"#,
        );
        assert_eq!(
            unregistered,
            MeshError::Refused {
                status: 417,
                event: Some("SEND".into()),
                code: Some("12".into()),
                message: "Unregistered to address".into()
            }
        );
        let v1 = error_from_answer(
            StatusCode::BAD_REQUEST,
            None,
            r#"{"errorEvent":"TRANSFER","errorCode":"06","errorDescription":"MalformedControlFile"}"#,
        );
        assert!(matches!(v1, MeshError::Refused { code: Some(c), .. } if c == "06"));
        let auth = error_from_answer(
            StatusCode::FORBIDDEN,
            None,
            r#"{"errorDescription":"Invalid Authentication Token"}"#,
        );
        assert_eq!(
            auth,
            MeshError::AuthRejected {
                status: 403,
                detail: "Invalid Authentication Token".into()
            }
        );
        for status in [408, 429, 500, 502, 503] {
            let e = error_from_answer(
                StatusCode::from_u16(status).unwrap(),
                Some(Duration::from_secs(5)),
                "<html>busy</html>",
            );
            assert!(
                matches!(e, MeshError::Unavailable { status: s, retry_after: Some(_), .. } if s == status),
                "{status}: {e:?}"
            );
        }
    }
}
