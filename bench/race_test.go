//go:build race

package bench

// raceEnabled: the race detector's sync.Pool drops items on purpose, so
// pooled paths allocate.
const raceEnabled = true
