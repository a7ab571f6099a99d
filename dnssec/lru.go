package dnssec

import (
	"container/list"
	"sync"
)

// lruShard is one shard of the lazy signature cache: a map and a recency
// list under a mutex held only for map and list updates (signing happens
// outside it).
type lruShard struct {
	mu    sync.Mutex
	max   int
	ll    *list.List // front is most recent; values are *entry
	items map[string]*list.Element
}

func newLRUShard(max int) *lruShard {
	if max < 1 {
		max = 1
	}
	return &lruShard{max: max, ll: list.New(), items: map[string]*list.Element{}}
}

func (c *lruShard) get(key string) (*entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return nil, false
	}
	c.ll.MoveToFront(el)
	return el.Value.(*entry), true
}

func (c *lruShard) add(e *entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[e.key]; ok {
		el.Value = e
		c.ll.MoveToFront(el)
		return
	}
	c.items[e.key] = c.ll.PushFront(e)
	for c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.items, old.Value.(*entry).key)
	}
}

func (c *lruShard) each(f func(*entry)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for el := c.ll.Front(); el != nil; el = el.Next() {
		f(el.Value.(*entry))
	}
}

func (c *lruShard) removeIf(f func(*entry) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for el := c.ll.Front(); el != nil; {
		next := el.Next()
		if e := el.Value.(*entry); f(e) {
			c.ll.Remove(el)
			delete(c.items, e.key)
		}
		el = next
	}
}

func (c *lruShard) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
