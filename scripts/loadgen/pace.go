package loadgen

import (
	"context"
	"sync"
	"time"
)

// PaceResult says how well a paced phase kept its schedule.
type PaceResult struct {
	Started  int           // jobs handed to workers
	Elapsed  time.Duration // from the first scheduled start to the last job's end
	MaxLag   time.Duration // largest delay of a job's start behind its schedule
	LateJobs int           // jobs that started more than 1 ms behind schedule
}

// Pace runs fn(ctx, i) for i = 0, 1, ... at rate per second for dur (and at
// most limit jobs), open loop: job i is due at start + i/rate whatever
// earlier jobs did, and up to workers jobs run at once. When every worker
// is busy the schedule slips; MaxLag and LateJobs report it, because a
// latency figure measured behind a slipping schedule understates the load.
// It returns when every started job has returned, or ctx ends.
func Pace(ctx context.Context, rate float64, dur time.Duration, limit, workers int, fn func(ctx context.Context, i int)) PaceResult {
	if rate <= 0 || workers <= 0 {
		return PaceResult{}
	}
	total := min(limit, int(rate*dur.Seconds()))
	jobs := make(chan int, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				fn(ctx, i)
			}
		}()
	}
	var res PaceResult
	start := time.Now()
	interval := time.Duration(float64(time.Second) / rate)
	i := 0
loop:
	for i < total {
		due := start.Add(time.Duration(i) * interval)
		if wait := time.Until(due); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				break loop
			case <-t.C:
			}
		}
		// Hand out every job that is due now in one go: waking once per
		// job at thousands per second costs more than it measures.
		now := time.Now()
		for i < total && !start.Add(time.Duration(i)*interval).After(now) {
			select {
			case jobs <- i:
			case <-ctx.Done():
				break loop
			}
			lag := time.Since(start.Add(time.Duration(i) * interval))
			res.MaxLag = max(res.MaxLag, lag)
			if lag > time.Millisecond {
				res.LateJobs++
			}
			i++
		}
	}
	close(jobs)
	wg.Wait()
	res.Started = i
	res.Elapsed = time.Since(start)
	return res
}
