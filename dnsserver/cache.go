package dnsserver

import (
	"hash/maphash"
	"slices"

	"github.com/miekg/dns"
)

// A UDP worker remembers the queries it answered lately (those it saw at
// least twice), keyed by their bytes after the ID, so that a query it has
// seen before skips Msg.Unpack, and the responses it packed for them, so
// that an answer it has given before skips Msg.PackBuffer. Resolvers ask
// the few names of a GSLB zone over and over; unpacking and packing were a
// fifth of the CPU time of a query, the answer itself a twentieth. Only
// plain queries are remembered (see plainQuery): a compression pointer
// could make the ID part of the question.
//
// Nothing here decides an answer: every query still runs answer (the zone
// lookup and the routing decision, from the current snapshot), and a
// remembered response is only used when that answer is the one it was
// packed from. An answer is a function of the query's bytes, the view and
// the routing decision, which shows in the datacenters the answer named
// (gslb), a refusal and the ECS scope; so a response is kept per query and
// per such outcome. Every entry belongs to one view: a new snapshot empties
// the cache, so a drain or a health change shows in the very next answer
// as before.
const (
	// cacheQueries bounds the queries a worker remembers; when full it
	// forgets them all, so that memory stays bounded without bookkeeping.
	cacheQueries = 256
	// cacheSightings is the number of query fingerprints a worker keeps
	// to admit only queries seen twice: a flood of distinct names then
	// costs a hash per query, not a cache entry.
	cacheSightings = 1024
	// cacheAnswers bounds the responses kept per query: one per routing
	// outcome (a weighted or nearest service has a few).
	cacheAnswers = 4
	// cacheMaxSize is the largest response kept.
	cacheMaxSize = 1232
)

// answerCache is one worker's memory. It is not safe for concurrent use.
// It holds the view of its entries until the next query, as the server's
// current view does.
type answerCache struct {
	view    *view
	queries map[string]*cachedQuery
	// seen holds fingerprints of queries not remembered, by fingerprint
	// modulo its length.
	seen [cacheSightings]uint64
	seed maphash.Seed
}

func newAnswerCache() *answerCache {
	return &answerCache{queries: make(map[string]*cachedQuery, cacheQueries), seed: maphash.MakeSeed()}
}

// cachedQuery is a query as Msg.Unpack made it (its ID aside) and the
// responses packed for it.
type cachedQuery struct {
	req     dns.Msg
	answers []cachedAnswer
}

// cachedAnswer is a packed response and the outcome it was packed from.
type cachedAnswer struct {
	gslb    []*dcData
	refused *serviceData
	scoped  bool
	scope   int
	// ede is the Extended DNS Error the answer carried, if any (every DC
	// down gives the same datacenters as a healthy answer, with an EDE).
	hasEDE bool
	ede    dns.EDNS0_EDE
	packed []byte
}

// query returns the query whose bytes after the ID are key, as answered
// under v, nil if it is not remembered.
func (c *answerCache) query(v *view, key []byte) *cachedQuery {
	if c.view != v {
		clear(c.queries)
		c.view = v
	}
	return c.queries[string(key)]
}

// add remembers req, just unpacked from a packet whose bytes after the ID
// are key, and returns its entry, or returns nil the first time it sees
// key lately. req's sections are not written to afterwards, so the entry
// shares them.
func (c *answerCache) add(key []byte, req *dns.Msg) *cachedQuery {
	h := maphash.Bytes(c.seed, key) | 1 // never 0, an empty slot
	if slot := &c.seen[h%cacheSightings]; *slot != h {
		*slot = h
		return nil
	}
	if len(c.queries) >= cacheQueries {
		clear(c.queries)
	}
	q := &cachedQuery{req: *req}
	c.queries[string(key)] = q
	return q
}

// packed returns the response packed for the answer r holds, nil if none
// is kept.
func (q *cachedQuery) packed(r *response) []byte {
	for i := range q.answers {
		a := &q.answers[i]
		if a.refused == r.refused && a.scoped == r.scoped && a.scope == r.scope && a.hasEDE == r.hasEDE && a.ede == r.ede && slices.Equal(a.gslb, r.gslb) {
			return a.packed
		}
	}
	return nil
}

// remember keeps b, the response packed for the answer r holds.
func (q *cachedQuery) remember(r *response, b []byte) {
	if len(q.answers) >= cacheAnswers || len(b) > cacheMaxSize {
		return
	}
	q.answers = append(q.answers, cachedAnswer{
		gslb:    slices.Clone(r.gslb),
		refused: r.refused,
		scoped:  r.scoped,
		scope:   r.scope,
		hasEDE:  r.hasEDE,
		ede:     r.ede,
		packed:  slices.Clone(b),
	})
}
