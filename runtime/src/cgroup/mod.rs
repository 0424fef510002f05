//! Control groups for one container, on cgroup v1 (incl. the hybrid layout) and v2.
