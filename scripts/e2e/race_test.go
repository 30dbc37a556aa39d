//go:build race

package e2e_test

// raceEnabled builds the services with -race when the tests run with it, so
// data races inside the processes are caught too.
const raceEnabled = true
