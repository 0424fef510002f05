//! Tests of the whole module against fake cgroup trees in a temporary directory.
