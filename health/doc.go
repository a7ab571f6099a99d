// Package health probes endpoints and tracks their up/down state with rise/fall
// hysteresis. It reports changes through a function the caller supplies; it
// knows nothing of routing.
//
// A Checker owns one goroutine per target, each probing on its own staggered
// schedule through a Prober (NetProber by default) and feeding the results to
// a Tracker, the pure threshold state machine. While a target's state is in
// doubt it is re-probed at its check's fast interval. The proxy's passive
// signals (Checker.ReportPassive) take a failing target down at once; only
// probes bring it back.
package health
