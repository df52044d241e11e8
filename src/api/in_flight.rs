//! A cap on the requests one address has in progress at once. With the request head and body
//! timeouts (`server.request_head_timeout_ms`, `server.body_timeout_secs`) it bounds what a
//! single address can hold open: slow or numerous requests past the cap get 429 (`GW-RATE-02`)
//! with `Retry-After`, as an OperationOutcome, before any work is done for them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{ResponseError, web};

use crate::error::{ApiError, codes};
use crate::fhir::outcome::Issue;

/// Requests in progress, by source address.
#[derive(Debug, Default)]
pub struct InFlight {
    cap: usize,
    by_ip: Mutex<HashMap<IpAddr, usize>>,
}

impl InFlight {
    pub fn new(cap: usize) -> Arc<InFlight> {
        Arc::new(InFlight {
            cap: cap.max(1),
            by_ip: Mutex::new(HashMap::new()),
        })
    }

    /// Counts one more request from `ip`, or refuses it when the cap is reached.
    fn enter(self: &Arc<Self>, ip: IpAddr) -> Option<Guard> {
        let mut map = self.by_ip.lock().ok()?;
        let n = map.entry(ip).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(Guard {
            owner: self.clone(),
            ip,
        })
    }

    /// Requests in progress from `ip`.
    pub fn count(&self, ip: IpAddr) -> usize {
        self.by_ip
            .lock()
            .map(|m| m.get(&ip).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

/// Uncounts its request when dropped (the response was produced or the request abandoned).
struct Guard {
    owner: Arc<InFlight>,
    ip: IpAddr,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(mut map) = self.owner.by_ip.lock()
            && let Some(n) = map.get_mut(&self.ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Refuses a request from an address that already has the configured number in progress.
pub async fn cap_in_flight(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let (Some(in_flight), Some(ip)) = (
        req.app_data::<web::Data<Arc<InFlight>>>().cloned(),
        req.peer_addr().map(|a| a.ip()),
    ) else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    match in_flight.enter(ip) {
        Some(guard) => {
            let res = next.call(req).await?;
            drop(guard);
            Ok(res.map_into_left_body())
        }
        None => {
            let err = ApiError::TooManyRequests {
                issue: Issue::error(
                    "throttled",
                    "Too many requests from this address are in progress; try again shortly.",
                )
                .with_code(codes::TOO_MANY_CONCURRENT),
                retry_after_secs: 1,
            };
            Ok(req
                .into_response(err.error_response())
                .map_into_right_body())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_counts_requests_in_progress_per_address() {
        let f = InFlight::new(2);
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let g1 = f.enter(a).unwrap();
        let _g2 = f.enter(a).unwrap();
        assert!(f.enter(a).is_none(), "the third from one address waits");
        assert!(f.enter(b).is_some(), "another address is not affected");
        drop(g1);
        assert_eq!(f.count(a), 1);
        assert!(f.enter(a).is_some(), "a finished request frees its place");
    }
}
