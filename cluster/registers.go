package cluster

// Registers returns every drain register this member holds, tombstones
// (undrains) included, in key order: the caller learns who lifted a drain.
// The result is the caller's.
func (c *Cluster) Registers() []Drain {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tab.allDrains()
}
