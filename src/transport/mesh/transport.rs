//! MESH as a delivery transport (`EndpointKind::Mesh`): the prepared copy, already an ITK3
//! message serialised as FHIR XML by the delivery stage, is sent to the recipient's mailbox on
//! the endpoint's workflow. The mailbox is the endpoint's, else MESH endpoint lookup's (by ODS
//! code and workflow, cached by the client). A send accepted by MESH awaits the ITK3
//! acknowledgements (`AwaitingAcknowledgement` with the MESH message id).

use async_trait::async_trait;

use super::{MeshClient, MeshError, OutboundMessage};
use crate::codes;
use crate::transport::endpoint::{Endpoint, EndpointKind};
use crate::transport::{DeliveryOutcome, PreparedCopy, SendContext, Transport};

/// The MESH transport: one client for the gateway's mailbox.
pub struct MeshTransport {
    pub client: MeshClient,
}

impl MeshTransport {
    /// The mailbox `endpoint` receives at: its own, else the first MESH endpoint lookup gives
    /// for its ODS code and workflow. Lookup failures are the delivery's outcome.
    pub async fn mailbox_for(&self, endpoint: &Endpoint) -> Result<String, DeliveryOutcome> {
        let Some(address) = &endpoint.mesh else {
            return Err(DeliveryOutcome::Permanent {
                code: codes::MESH_PROTOCOL,
                reason: format!("the endpoint of {} has no MESH address", endpoint.ods),
                status_code: None,
            });
        };
        if let Some(m) = &address.mailbox {
            return Ok(m.clone());
        }
        match self.client.lookup(&endpoint.ods, &address.workflow).await {
            Ok(found) => found
                .into_iter()
                .map(|r| r.mailbox_id)
                .next()
                .ok_or_else(|| DeliveryOutcome::Permanent {
                    code: codes::MESH_REFUSED,
                    reason: format!(
                        "MESH endpoint lookup found no mailbox for {} on workflow {}: the practice must be given a mailbox in the directory",
                        endpoint.ods, address.workflow
                    ),
                    status_code: None,
                }),
            Err(e) => Err(lookup_failure(e)),
        }
    }
}

fn lookup_failure(e: MeshError) -> DeliveryOutcome {
    match e.outcome() {
        DeliveryOutcome::Permanent {
            code,
            reason,
            status_code,
        } => DeliveryOutcome::Permanent {
            code,
            reason: format!("MESH endpoint lookup: {reason}"),
            status_code,
        },
        other => other,
    }
}

#[async_trait]
impl Transport for MeshTransport {
    fn kind(&self) -> EndpointKind {
        EndpointKind::Mesh
    }

    async fn send(
        &self,
        _ctx: &SendContext<'_>,
        endpoint: &Endpoint,
        copy: &PreparedCopy<'_>,
    ) -> DeliveryOutcome {
        let mailbox = match copy.to_mailbox {
            Some(m) => m.to_string(),
            None => match self.mailbox_for(endpoint).await {
                Ok(m) => m,
                Err(outcome) => return outcome,
            },
        };
        let workflow = endpoint
            .mesh
            .as_ref()
            .map(|m| m.workflow.as_str())
            .unwrap_or(crate::transport::endpoint::TOC_DISCHARGE_WORKFLOW);
        let file_name = format!("{}.xml", copy.delivery_id);
        let message = OutboundMessage {
            local_id: Some(copy.delivery_id),
            subject: Some("ITK3 Transfer of Care: discharge from custody"),
            file_name: Some(&file_name),
            content_type: Some("application/fhir+xml"),
            ..OutboundMessage::new(&mailbox, workflow, &copy.body)
        };
        self.client.deliver(&message).await
    }
}

/// Where MESH is not configured: a MESH endpoint cannot be registered then, so a delivery to
/// one (registered before `[mesh]` was removed) ends with the reason.
pub struct MeshNotConfigured;

#[async_trait]
impl Transport for MeshNotConfigured {
    fn kind(&self) -> EndpointKind {
        EndpointKind::Mesh
    }

    async fn send(
        &self,
        _ctx: &SendContext<'_>,
        endpoint: &Endpoint,
        _copy: &PreparedCopy<'_>,
    ) -> DeliveryOutcome {
        DeliveryOutcome::Permanent {
            code: codes::MESH_REFUSED,
            reason: format!(
                "the endpoint of {} is a MESH mailbox and this gateway has no [mesh] configuration",
                endpoint.ods
            ),
            status_code: None,
        }
    }
}
