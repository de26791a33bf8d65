//go:build !race

package webhooks

// raceEnabled is true under the race detector, whose slowdown makes latency
// figures meaningless.
const raceEnabled = false
