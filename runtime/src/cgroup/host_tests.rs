//! Tests on the real cgroups of this host (needs root).
