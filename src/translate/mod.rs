//! Declarative translation between the prison profile and the community ones (UK Core R4, GP
//! Connect STU3), driven by `mappings/`. Pure: no I/O after loading.
