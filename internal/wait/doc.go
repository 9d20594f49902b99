// Package wait holds the one way agentd's loops pause: for a duration, or
// until their context ends, whichever comes first (backoffs, retries, polls).
// It owns no goroutine and no state.
package wait
