// Package audit holds what the completeness audit shares between the
// `callstream audit` command and the producer's periodic check: the
// arithmetic of audit windows (whole UTC days or hours of creation_time,
// [start, end) as the API's start_date/end_date filters read them) and the
// table of counts per window.
//
// An audit compares, per organization and window, the API's count (one
// call-logs request with page_size=1 per window) with the distinct calls
// (org, call_key) found downstream: published on the events topic, stored
// in call_logs, written to the lake. A window is audited only once it is
// closed, that is once the producer's last rescan has read it (its end is
// at least settle_lag plus the largest rescan age in the past): before
// that a late record may still be on its way and would show as a false gap.
package audit
