//! Ops: what each IR op means here. [`BuildWorker`] implements [`solver::Worker`].

pub mod context;
pub mod copy;
