// Package schedule runs TLS scans ([scan.Scan]) over many endpoints, keeps
// their results in certdb, and tells operators when something gets worse.
//
// It sits between package scan, which knows nothing of certdb, and the
// command line: `certctl scan` uses [Batch] to scan the endpoints of its
// arguments, [Record] to store results and [Compare] for `certctl scan
// history`; `certctl serve` runs a [Runner], which claims due schedules
// ([certdb.ScanStore.ClaimDueSchedules]), scans them, stores the results and
// fires [Hook]s. Package scan does not import this package.
//
// # Events
//
// After each scheduled scan the Runner compares the result with the
// previous one of the same target and fires the hooks for:
//   - [EventGradeDropped]: the grade ranks lower than before
//     ([scan.GradeRank]); a scan that fails after one that was graded counts
//     as a drop to "".
//   - [EventExpiring]: the leaf expires within the configured window (default
//     14 days), and the previous scan saw another certificate, or the same one
//     outside the window: fired once per certificate, not on every run.
//   - [EventRevoked]: the endpoint serves a certificate that this CA's
//     database lists as revoked (found by serial, and checked to be the same
//     certificate by its SHA-256), and the previous scan saw another
//     certificate or came before the revocation.
//
// # Hooks
//
// [Webhook] POSTs the [Event] as JSON; [Exec] runs a shell command with the
// event in its environment (CERTCTL_EVENT, CERTCTL_TARGET, …) and as JSON on
// its standard input. Both are bounded by a timeout. Neither logs the
// webhook URL's query or user information, nor header values, which may hold
// secrets.
//
// # Across processes
//
// Any number of `certctl serve` processes sharing one PostgreSQL database
// may each run a Runner: the claim is atomic, so each due schedule runs in
// one process.
package schedule
