//! What every aggregate is: a state folded from its events, and a pure decision
//! that turns a command into new events or a refusal.

use crate::error::DomainError;
use serde::{de::DeserializeOwned, Serialize};

pub trait Aggregate: Default + Clone + Send + Sync + 'static {
    /// The aggregate type in envelopes and stream ids (`wallet`, `transfer`).
    const TYPE: &'static str;
    /// The schema version written on new events of this aggregate.
    const SCHEMA_VERSION: u32 = 1;
    type Command;
    type Event: Serialize + DeserializeOwned + Clone + Send + Sync + std::fmt::Debug;

    /// `decide(state, command) -> events`: pure, no I/O, no clock.
    fn decide(&self, command: &Self::Command) -> Result<Vec<Self::Event>, DomainError>;

    /// `apply(state, event) -> state`: pure and total; every stored event applies.
    fn apply(self, event: &Self::Event) -> Self;

    fn apply_all<'a>(self, events: impl IntoIterator<Item = &'a Self::Event>) -> Self {
        events.into_iter().fold(self, Self::apply)
    }

    /// Whether this aggregate's streams grow long enough to keep snapshots (a
    /// merchant's or a sponsor's wallet). Only then does a load ask the store for
    /// one: an aggregate without snapshots pays no extra read for them.
    const KEEPS_SNAPSHOTS: bool = false;

    /// The state as a snapshot (aggregates that keep them).
    fn to_snapshot(&self) -> Option<serde_json::Value> {
        None
    }

    /// The state a snapshot of this aggregate's current schema version holds.
    fn from_snapshot(_state: &serde_json::Value) -> Option<Self> {
        None
    }
}

/// Given/when/then for aggregate tests:
/// `given::<Wallet>(&[created]).when(&cmd).then(&[expected])`.
#[cfg(test)]
pub mod testing {
    use super::*;

    pub struct Given<A: Aggregate>(A);

    pub fn given<A: Aggregate>(events: &[A::Event]) -> Given<A> {
        Given(A::default().apply_all(events))
    }

    pub struct When<A: Aggregate>(pub Result<Vec<A::Event>, DomainError>);

    impl<A: Aggregate> Given<A> {
        pub fn when(self, command: &A::Command) -> When<A> {
            When(self.0.decide(command))
        }
        pub fn state(self) -> A {
            self.0
        }
    }

    impl<A: Aggregate> When<A>
    where
        A::Event: PartialEq,
    {
        #[track_caller]
        pub fn then(self, expected: &[A::Event]) {
            match self.0 {
                Ok(events) => assert_eq!(events, expected),
                Err(e) => panic!("expected events {expected:?}, got refusal {e:?}"),
            }
        }
        #[track_caller]
        pub fn then_refused(self, code: &str) -> DomainError {
            match self.0 {
                Ok(events) => panic!("expected refusal {code}, got events {events:?}"),
                Err(e) => {
                    assert_eq!(e.code(), code, "{e}");
                    e
                }
            }
        }
    }
}
