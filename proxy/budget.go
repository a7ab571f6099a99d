package proxy

import (
	"sync/atomic"

	"github.com/coopr-gslb/coopr-gslb/config"
)

// budgetWindow is how many seconds of history the retry budget weighs.
const budgetWindow = 10

// retryBudget caps the retries of a service at a share of its recent
// requests, as Finagle's and Linkerd's retry budgets do: over the last
// budgetWindow seconds, retries may add at most retry.budget_percent to the
// requests, plus retry.min_retries per second that are always allowed so a
// quiet service can still fail over.
//
// It weighs rates rather than retries in flight: when a DC hangs, every
// request in flight to it times out at about the same moment, and a cap on
// concurrent retries would fail most of them, while the retries are a small
// share of the traffic. A DC that fails everything still sees at most the
// budget's share of extra requests.
//
// The counters are atomics in one-second buckets; a bucket is reset by the
// first request of a new second, and a count racing that reset may be lost,
// which only makes the budget approximate. It must not be copied.
type retryBudget struct {
	buckets [budgetWindow]budgetBucket
}

type budgetBucket struct {
	sec               atomic.Int64
	requests, retries atomic.Int64
}

// bucket returns the bucket of second sec, reset if it held an older second.
func (b *retryBudget) bucket(sec int64) *budgetBucket {
	bk := &b.buckets[sec%budgetWindow]
	if old := bk.sec.Load(); old != sec && bk.sec.CompareAndSwap(old, sec) {
		bk.requests.Store(0)
		bk.retries.Store(0)
	}
	return bk
}

// request deposits one request made at second sec.
func (b *retryBudget) request(sec int64) { b.bucket(sec).requests.Add(1) }

// withdraw takes one retry at second sec if the budget allows it.
func (b *retryBudget) withdraw(sec int64, r config.Retry) bool {
	var requests, retries int64
	for i := range b.buckets {
		bk := &b.buckets[i]
		if s := bk.sec.Load(); s > sec-budgetWindow && s <= sec {
			requests += bk.requests.Load()
			retries += bk.retries.Load()
		}
	}
	if retries*100 >= requests*int64(r.BudgetPercent)+int64(r.MinRetries)*budgetWindow*100 {
		return false
	}
	b.bucket(sec).retries.Add(1)
	return true
}
