package proxy

import (
	"net/http"
	"time"
)

// Hedging (retry.hedge) races a slow first try instead of abandoning it, as
// Envoy's hedge_on_per_try_timeout and Finagle's backup requests do: when
// the first try of a replayable request has not answered within its
// adaptive timeout, a backup try starts on the next endpoint that is not
// ejected, normally in the next DC, and the first answer of the two wins.
// A hung DC costs the adaptive timeout, as without hedging; a DC that is
// only slow this once still gets to answer, and nothing waits for the
// backup's connection set-up to be abandoned.
//
// Only the first try is raced, so a request holds at most two tries at
// once, and both count against retry.attempts. The tries of a race run on
// goroutines owned by the request, which cancels the loser as soon as it
// has a winner and joins both in finish.

// race is the state of a request's hedged first try and its backup. The
// zero race has nothing running.
type race struct {
	done    chan *attempt // finished tries; buffered for both
	running int           // tries started and not yet received from done
	backup  *attempt      // the backup try, once started
	first   *attempt      // the raced first try
}

// hedgeDelay reports whether the next try, of ep, is a first try to race,
// and after how long its backup starts: the adaptive timeout, when it is
// shorter than the try's own bound and a second try fits in
// retry.attempts. A request whose body streams, or that asks for a protocol
// upgrade, is never raced.
func (st *reqState) hedgeDelay(out *http.Request, ep *endpoint) (time.Duration, bool) {
	if !st.sv.retry.Hedges() || !st.replayable || len(st.tried) > 0 || st.streamBody != nil ||
		st.reached+2 > st.sv.retry.Attempts || out.Header.Get("Upgrade") != "" || !st.hasHealthyNext() {
		return 0, false
	}
	limit := st.plainTimeout()
	d := st.adaptiveTimeout(ep, limit)
	return d, d < limit
}

// hedged starts the first try of ep on its own goroutine and, if it has
// not finished after delay, a backup try beside it. It returns the first
// try to finish; the other, if any, is still running (st.race.running).
func (st *reqState) hedged(out *http.Request, tv *targetView, ep *endpoint, delay time.Duration) *attempt {
	r := &st.race
	r.done = make(chan *attempt, 2)
	r.first = st.begin(out, tv, ep, st.plainTimeout())
	r.start(r.first)
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case a := <-r.done:
		return r.received(a)
	case <-t.C:
	}
	// The first try is overdue: back it up on the next endpoint, normally
	// in the next DC, where a timeout would have sent it.
	cur := st.cursor()
	st.leaveDC()
	if ntv, nep := st.next(); nep != nil && st.mayHedge(tv, ntv, nep) {
		r.backup = st.begin(out, ntv, nep, st.plainTimeout())
		st.sv.state.m.hedges[hedgeStarted].Inc()
		r.start(r.backup)
	} else {
		st.setCursor(cur)
	}
	return r.wait()
}

// mayHedge reports whether a backup of a try of tv may go to nep in ntv:
// within the deadline, and, like a retry, free when it leaves for an
// endpoint of another DC that is not ejected, from the retry budget when it
// stays in the DC.
func (st *reqState) mayHedge(tv, ntv *targetView, nep *endpoint) bool {
	if !time.Now().Before(st.deadline) {
		return false
	}
	if ntv != tv && !nep.ejected(sinceEpoch(st.p.now())) {
		return true
	}
	return st.sv.state.budget.withdraw(time.Now().Unix(), st.sv.retry)
}

// start runs a on a goroutine the request owns.
func (r *race) start(a *attempt) {
	r.running++
	go func() {
		a.run()
		r.done <- a
	}()
}

// wait returns the next try of the race to finish.
func (r *race) wait() *attempt { return r.received(<-r.done) }

func (r *race) received(a *attempt) *attempt {
	r.running--
	a.received = true
	return a
}

// won ends the race with a's answer, which the request returns: the other
// try is abandoned.
func (r *race) won(st *reqState, a *attempt) {
	if r.backup == nil {
		return
	}
	if a == r.backup {
		st.sv.state.m.hedges[hedgeBackupWon].Inc()
	} else {
		st.sv.state.m.hedges[hedgeFirstWon].Inc()
	}
	r.abandon(st, true)
}

// abandon cancels the try still running when the request has its answer
// (won) or gave up. A raced first try that loses to its backup ran past its
// adaptive timeout: that counts as a timeout for passive ejection at once,
// as the timeout would have without hedging. A backup that loses is not to
// blame.
func (r *race) abandon(st *reqState, won bool) {
	if r.running == 0 {
		return
	}
	for _, a := range [2]*attempt{r.first, r.backup} {
		if a == nil || a.received {
			continue
		}
		a.cancel()
		if won && a == r.first && r.backup != nil {
			st.p.metrics.upstreamErrors[failTimeout].Inc()
			st.p.recordFailureNow(st.v, a.ep, a.tv.pool, failTimeout.String(), true)
		}
	}
}

// join waits for the tries still running, which abandon has cancelled,
// and releases what they hold. finish calls it: a loser's goroutine ends
// with the request.
func (r *race) join() {
	for r.running > 0 {
		a := r.wait()
		a.cancel()
		if a.res != nil {
			a.res.Body.Close()
		}
		a.ep.inflight.Add(-1)
	}
}
