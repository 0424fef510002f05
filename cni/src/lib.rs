//! CNI: a spec-exact bridge plugin, host-local IPAM and a caller for plugin chains (grows in later issues).
