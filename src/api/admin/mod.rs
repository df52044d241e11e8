//! `/admin`: data-sharing agreements, the endpoint directory and the deliveries operators watch
//! and replay (for the roles `icb` and `admin`, as the route table declares; agreements are
//! written by `admin` only, and an ICB changes only the endpoints of its area).

pub mod agreements;
pub mod deliveries;
pub mod endpoints;
