//! The route table: the single source for the router, the access rule of each route, the query
//! parameters each route takes (with their schemas), the CapabilityStatement and the tests that
//! hold `openapi.yaml` to the router.
//!
//! Each protected route declares once who may use it (roles), on which resource and with which
//! permission; the [`Principal`](crate::auth::Principal) extractor checks that declaration for
//! the route it is extracted for, so handlers never retype it.

use std::collections::HashMap;

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, Route, web};

use super::query::{self, Kind, Param, param};
use super::{
    admin, audit, bundle, communication, consent, health, metadata, oauth, patient, sharing, task,
};
use super::{translate, validate};
use crate::auth::Permission;
use crate::domain::Role;
use crate::error::{ApiError, codes};
use crate::fhir::outcome::Issue;

/// Who may use a route. Every route but the [`Access::Open`] ones needs a client certificate
/// (mutual TLS, checked by [`super::mtls`]) unless a development set-up relaxed that.
#[derive(Debug, Clone, Copy)]
pub enum Access {
    /// Anyone: no token, no client certificate (metadata, the well-known documents, `/healthz`,
    /// `/readyz`).
    Open,
    /// No token needed, but a client certificate (the token endpoint, metrics).
    Public,
    /// Any valid token (code translation, DESIGN §10).
    Authenticated,
    /// A valid token whose role is one of `roles` and whose scopes grant `permission` on
    /// `resource`.
    Protected {
        roles: &'static [Role],
        resource: &'static str,
        permission: Permission,
    },
}

/// One row of the route table.
pub struct RouteDef {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    /// The query parameters the route reads, with their schemas (checked with the access rule;
    /// any other parameter is refused on the routes that take a token).
    pub query: &'static [Param],
    pub route: fn() -> Route,
}

impl RouteDef {
    /// The route reads these query parameters.
    fn query(mut self, query: &'static [Param]) -> RouteDef {
        self.query = query;
        self
    }
}

const CARE: &[Role] = &[Role::Prison, Role::Gp, Role::Icb, Role::Service];
const TOOLS: &[Role] = &[
    Role::Prison,
    Role::Gp,
    Role::Icb,
    Role::Service,
    Role::Admin,
];
const PRISON: &[Role] = &[Role::Prison];
/// ICBs and the gateway operator: read agreements, watch deliveries, and change endpoints (an
/// ICB only for the organisations of its area, checked by `admin::put_endpoint`).
const OPERATORS: &[Role] = &[Role::Icb, Role::Admin];
/// The gateway operator alone: writes data-sharing agreements (an ICB may only read them).
const ADMINS: &[Role] = &[Role::Admin];
/// `$sharing-decision`: the use case answers the patient's current prison and IG in full, and a
/// recipient (GP, ICB, service) only about itself, with counts.
const DECIDERS: &[Role] = &[
    Role::Prison,
    Role::Gp,
    Role::Icb,
    Role::Service,
    Role::Admin,
    Role::Auditor,
];
const AUDITORS: &[Role] = &[Role::Auditor];

const fn protected(
    roles: &'static [Role],
    resource: &'static str,
    permission: Permission,
) -> Access {
    Access::Protected {
        roles,
        resource,
        permission,
    }
}

fn def(method: Method, path: &'static str, access: Access, route: fn() -> Route) -> RouteDef {
    RouteDef {
        method,
        path,
        access,
        query: &[],
        route,
    }
}

/// `POST /fhir/Bundle/$translate`.
const TRANSLATE_QUERY: &[Param] = &[param("target", Kind::OneOf(query::TARGETS)).required()];
/// Reads of a copy: `GET /fhir/Bundle/{id}`, `/fhir/Patient/{id}`, `/fhir/Patient/{id}/$everything`.
const READ_QUERY: &[Param] = &[query::PROFILE];
/// `GET /fhir/Patient`.
const PATIENT_SEARCH: &[Param] = &[
    param("identifier", Kind::NhsNumber).required(),
    query::PROFILE,
];
/// `GET /fhir/Consent`.
const CONSENT_SEARCH: &[Param] = &[
    param("patient", Kind::NhsNumber),
    param("patient:identifier", Kind::NhsNumber),
];
/// `POST /fhir/$validate`.
const VALIDATE_QUERY: &[Param] = &[param("profile", Kind::Text)];
/// `GET /fhir/Task`.
const TASK_SEARCH: &[Param] = &[
    param("focus", Kind::Text),
    param("owner", Kind::Text),
    param("owner:identifier", Kind::Text),
    param("status", Kind::OneOf(query::TASK_STATUSES)),
    param("business-status", Kind::OneOf(query::BUSINESS_STATUSES)),
    param("_lastUpdated", Kind::Date(&["ge", "gt"])),
    param("_count", Kind::Count),
];
/// `GET /fhir/Communication`: the alerts sent to the caller's prison.
const COMMUNICATION_SEARCH: &[Param] = &[
    param("status", Kind::OneOf(query::COMMUNICATION_STATUSES)),
    param("category", Kind::OneOf(query::ALERT_STATES)),
    param("sent", Kind::Date(&["ge", "gt", "le", "lt", "eq"])).repeats(),
    param("_count", Kind::Count),
];
/// `GET /fhir/AuditEvent`.
const AUDIT_SEARCH: &[Param] = &[
    param("patient", Kind::NhsNumber),
    param("patient:identifier", Kind::NhsNumber),
    param("entity:identifier", Kind::NhsNumber),
    param("date", Kind::Date(&["ge", "gt", "le", "lt", "eq"])).repeats(),
    param("agent", Kind::Text),
    param("agent:identifier", Kind::Text),
    param("entity", Kind::Text),
    param("type", Kind::Text),
    param("subtype", Kind::Text),
    param("action", Kind::Text),
    param(
        "outcome",
        Kind::OneOf(&["0", "4", "8", "12", "success", "failure"]),
    ),
    param("_count", Kind::Count),
];
/// `GET /admin/deliveries`.
const DELIVERY_SEARCH: &[Param] = &[
    param("status", Kind::OneOf(query::TASK_STATUSES)),
    param("business-status", Kind::OneOf(query::BUSINESS_STATUSES)),
    param("at-risk", Kind::Bool),
    param("recipient", Kind::Text),
    param("document", Kind::Text),
    param("_count", Kind::Count),
];

/// Every route the gateway serves. More specific paths come before parameterised ones.
pub fn route_table() -> Vec<RouteDef> {
    use Permission::{Create, Delete, Read, Search, Update};
    vec![
        def(Method::GET, "/fhir/metadata", Access::Open, || {
            web::get().to(metadata::capability_statement)
        }),
        def(
            Method::POST,
            "/fhir/Bundle",
            protected(PRISON, "Bundle", Create),
            || web::post().to(bundle::submit_document),
        ),
        def(
            Method::POST,
            "/fhir/Bundle/$translate",
            protected(TOOLS, "Bundle", Read),
            || web::post().to(translate::translate_bundle),
        )
        .query(TRANSLATE_QUERY),
        def(
            Method::POST,
            "/fhir/ConceptMap/$translate",
            Access::Authenticated,
            || web::post().to(translate::translate_code),
        ),
        def(
            Method::GET,
            "/fhir/Bundle/{id}",
            protected(CARE, "Bundle", Read),
            || web::get().to(bundle::read_document),
        )
        .query(READ_QUERY),
        def(
            Method::POST,
            "/fhir/Consent",
            protected(PRISON, "Consent", Create),
            || web::post().to(consent::create_consent),
        ),
        def(
            Method::GET,
            "/fhir/Consent",
            protected(PRISON, "Consent", Search),
            || web::get().to(consent::search_consents),
        )
        .query(CONSENT_SEARCH),
        def(
            Method::GET,
            "/fhir/Consent/{id}",
            protected(PRISON, "Consent", Read),
            || web::get().to(consent::read_consent),
        ),
        def(
            Method::PUT,
            "/fhir/Consent/{id}",
            protected(PRISON, "Consent", Update),
            || web::put().to(consent::update_consent),
        ),
        def(
            Method::POST,
            "/fhir/$sharing-decision",
            protected(DECIDERS, "Bundle", Read),
            || web::post().to(sharing::sharing_decision),
        ),
        def(
            Method::POST,
            "/fhir/$validate",
            protected(TOOLS, "Bundle", Read),
            || web::post().to(validate::validate_resource),
        )
        .query(VALIDATE_QUERY),
        def(
            Method::GET,
            "/fhir/Patient",
            protected(CARE, "Patient", Search),
            || web::get().to(patient::search_patients),
        )
        .query(PATIENT_SEARCH),
        def(
            Method::POST,
            "/fhir/Patient/$gpc.getstructuredrecord",
            protected(CARE, "Patient", Read),
            || web::post().to(patient::gpc_structured_record),
        ),
        def(
            Method::GET,
            "/fhir/Patient/{id}",
            protected(CARE, "Patient", Read),
            || web::get().to(patient::read_patient),
        )
        .query(READ_QUERY),
        def(
            Method::GET,
            "/fhir/Patient/{id}/$everything",
            protected(CARE, "Patient", Read),
            || web::get().to(patient::everything),
        )
        .query(READ_QUERY),
        def(
            Method::GET,
            "/fhir/Task",
            protected(CARE, "Task", Search),
            || web::get().to(task::search_tasks),
        )
        .query(TASK_SEARCH),
        def(
            Method::GET,
            "/fhir/Task/{id}",
            protected(CARE, "Task", Read),
            || web::get().to(task::read_task),
        ),
        def(
            Method::GET,
            "/fhir/Communication",
            protected(PRISON, "Communication", Search),
            || web::get().to(communication::search_communications),
        )
        .query(COMMUNICATION_SEARCH),
        def(
            Method::GET,
            "/admin/endpoints",
            protected(OPERATORS, "Endpoint", Read),
            || web::get().to(admin::endpoints::list_endpoints),
        ),
        def(
            Method::PUT,
            "/admin/endpoints/{ods}",
            protected(OPERATORS, "Endpoint", Update),
            || web::put().to(admin::endpoints::put_endpoint),
        ),
        def(
            Method::GET,
            "/admin/deliveries",
            protected(OPERATORS, "Task", Search),
            || web::get().to(admin::deliveries::list_deliveries),
        )
        .query(DELIVERY_SEARCH),
        def(
            Method::POST,
            "/admin/deliveries/{id}/retry",
            protected(OPERATORS, "Task", Update),
            || web::post().to(admin::deliveries::retry_delivery),
        ),
        def(
            Method::GET,
            "/fhir/AuditEvent",
            protected(AUDITORS, "AuditEvent", Search),
            || web::get().to(audit::search_audit_events),
        )
        .query(AUDIT_SEARCH),
        def(
            Method::GET,
            "/admin/agreements",
            protected(OPERATORS, "Agreement", Read),
            || web::get().to(admin::agreements::list_agreements),
        ),
        def(
            Method::GET,
            "/admin/agreements/{id}",
            protected(OPERATORS, "Agreement", Read),
            || web::get().to(admin::agreements::read_agreement),
        ),
        def(
            Method::PUT,
            "/admin/agreements/{id}",
            protected(ADMINS, "Agreement", Update),
            || web::put().to(admin::agreements::put_agreement),
        ),
        def(
            Method::DELETE,
            "/admin/agreements/{id}",
            protected(ADMINS, "Agreement", Delete),
            || web::delete().to(admin::agreements::retire_agreement),
        ),
        def(Method::POST, "/oauth2/token", Access::Public, || {
            web::post().to(oauth::issue_token)
        }),
        def(
            Method::GET,
            "/.well-known/smart-configuration",
            Access::Open,
            || web::get().to(oauth::smart_configuration),
        ),
        def(Method::GET, "/.well-known/jwks.json", Access::Open, || {
            web::get().to(oauth::jwks)
        }),
        def(Method::GET, "/metrics", Access::Public, || {
            web::get().to(health::metrics)
        }),
        def(Method::GET, "/healthz", Access::Open, || {
            web::get().to(health::healthz)
        }),
        def(Method::GET, "/readyz", Access::Open, || {
            web::get().to(health::readyz)
        }),
    ]
}

/// (method, path) of every route, for the CapabilityStatement and the OpenAPI test.
pub fn routes() -> Vec<(Method, &'static str)> {
    route_table()
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect()
}

/// The access rule and query parameters of every route, by method and path pattern, for the
/// `Principal` extractor.
#[derive(Debug, Default)]
pub struct AccessTable(HashMap<(Method, &'static str), (Access, &'static [Param])>);

impl AccessTable {
    pub fn from_table() -> AccessTable {
        AccessTable(
            route_table()
                .into_iter()
                .map(|r| ((r.method, r.path), (r.access, r.query)))
                .collect(),
        )
    }

    pub fn get(&self, method: &Method, pattern: &str) -> Option<Access> {
        self.rule(method, pattern).map(|(a, _)| a)
    }

    /// The query parameters the route declares (none for a route not in the table).
    pub fn query(&self, method: &Method, pattern: &str) -> &'static [Param] {
        self.rule(method, pattern).map(|(_, q)| q).unwrap_or(&[])
    }

    fn rule(&self, method: &Method, pattern: &str) -> Option<(Access, &'static [Param])> {
        self.0
            .iter()
            .find(|((m, p), _)| m == method && *p == pattern)
            .map(|(_, rule)| *rule)
    }
}

/// Every route's declared query parameters, by (method, path), for the OpenAPI test.
pub fn route_queries() -> Vec<(Method, &'static str, &'static [Param])> {
    route_table()
        .into_iter()
        .map(|r| (r.method, r.path, r.query))
        .collect()
}

/// Mounts the route table. Paths are grouped so that a known path with another method answers
/// 405 (with `Allow`), not 404.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let mut paths: Vec<&'static str> = Vec::new();
    let table = route_table();
    for r in &table {
        if !paths.contains(&r.path) {
            paths.push(r.path);
        }
    }
    for path in paths {
        let allow: Vec<&str> = table
            .iter()
            .filter(|r| r.path == path)
            .map(|r| r.method.as_str())
            .collect();
        let allow = allow.join(", ");
        let mut resource = web::resource(path).default_service(web::to(move || {
            let allow = allow.clone();
            async move { method_not_allowed(allow) }
        }));
        for r in table.iter().filter(|r| r.path == path) {
            resource = resource.route((r.route)());
        }
        cfg.service(resource);
    }
}

fn method_not_allowed(allow: String) -> HttpResponse {
    use actix_web::ResponseError;
    let mut response = ApiError::MethodNotAllowed.error_response();
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&allow) {
        response
            .headers_mut()
            .insert(actix_web::http::header::ALLOW, value);
    }
    response
}

/// The default service: no route for this method and path.
pub async fn unknown_route(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(
        Issue::error(
            "not-supported",
            format!("No route for {} {}.", req.method(), req.path()),
        )
        .with_code(codes::UNKNOWN_ROUTE),
    ))
}
