//! Transfer to a human: the decision policy (pure) and its targets.

pub mod policy;
