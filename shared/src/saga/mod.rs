//! Sagas: long-running, multi-aggregate processes driven by a state machine.
//!
//! The state machines are Amazon States Language files under `statemachines/`. On AWS,
//! Step Functions runs them and each Task is a Lambda function; locally, [`asl`]
//! runs the very same files and each Task is the same step handler, in process.

pub mod asl;
pub mod claim;
pub mod steps;
pub mod transfer;
