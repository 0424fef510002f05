//! The peapod node agent: pod workers, probes, node registration (grows in later issues).
