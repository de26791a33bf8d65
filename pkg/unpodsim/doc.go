// Package unpodsim is a simulated Unpod call-logs API: a real HTTP server
// with both endpoints of the API, realistic traffic, scripted incidents,
// every messy habit of the real API and injected faults. The embedded demo,
// the tests and the benchmarks use it in place of https://unpod.dev.
//
// # Model
//
// Each organization's calls are a pure function of (seed, org, minute): the
// minute's call count is Poisson around CallsPerMinute (shaped over the day
// and by incidents), and each call is drawn from the minute's own random
// stream. What the API shows of a call at time now is also a pure function:
// a record appears at its creation_time, or only after the call ended (late
// records), or at a random later time (page shifts); an updated record
// first shows a preliminary version and later its final one. Serving a page
// and computing ground truth walk the same generated calls: a page holds
// the bytes rendered from each version, the ground truth the values they
// were rendered from. The simulator calls no code of pkg/unpod (it reads
// its query parameters itself too), so a decoding or normalisation bug in
// the client shows up against the ground truth instead of hiding in both.
//
// # Query semantics
//
// start_date and end_date filter creation_time as [start_date, end_date):
// start inclusive, end exclusive. Results are newest first (creation_time
// descending, stable), page_size defaults to 20 and is clamped to
// MaxPageSize, count covers every page, and a page past the end is empty
// (not 404). call_status matches the normalised status, so "missed",
// "no-answer" and "no_answer" select the same records. Tokens are checked
// first (401), then the Org-Handle: 404 for an unknown org, 403 for one the
// token may not see.
//
// # Faults
//
// Faults (500, 429 with Retry-After in seconds or as an HTTP date, slow
// responses, truncated or malformed bodies, connection resets) are drawn
// per authorised request from a stream seeded by Seed, so a single
// sequential client sees the same faults on every run.
//
// # Running it
//
//	callstream simulate --listen 127.0.0.1:8089 --seed 7 --calls-per-minute 60
//
// then point the client (or the producer) at it:
//
//	UNPOD_API_URL=http://127.0.0.1:8089 UNPOD_API_TOKEN=sim-token callstream run
//
//	curl -H 'Authorization: Token sim-token' -H 'Org-Handle: acme' \
//	  'http://127.0.0.1:8089/api/v2/platform/call-logs/?page_size=5'
//
// In Go:
//
//	sim, _ := unpodsim.New(unpodsim.DefaultConfig())
//	go sim.ListenAndServe(ctx, "127.0.0.1:8089")
//	c, _ := unpod.New(unpod.Config{BaseURL: "http://127.0.0.1:8089", Token: unpodsim.DefaultToken})
//	w, _ := c.ReadWindow(ctx, unpod.Query{Org: "acme", PageSize: 1000, Start: from, End: to})
//	truth := sim.GroundTruthWindow("acme", from, to, sim.Now())
package unpodsim
