package cluster

// Stamp is a reading of a hybrid logical clock (HLC) with the member that
// made it. Stamps order the writes of a last-writer-wins register: by wall
// time, then by the logical counter, then by node name, so two members never
// produce equal stamps and every member picks the same winner.
type Stamp struct {
	// Wall is physical time in Unix nanoseconds, never behind any stamp the
	// member has seen.
	Wall int64 `json:"wall"`
	// Logical orders events within one Wall value.
	Logical uint32 `json:"logical"`
	// Node is the member whose clock made the stamp.
	Node string `json:"node"`
}

// Less reports whether s orders before o.
func (s Stamp) Less(o Stamp) bool {
	if s.Wall != o.Wall {
		return s.Wall < o.Wall
	}
	if s.Logical != o.Logical {
		return s.Logical < o.Logical
	}
	return s.Node < o.Node
}

// IsZero reports whether s was never set.
func (s Stamp) IsZero() bool { return s == Stamp{} }

// hlc is a hybrid logical clock (Kulkarni et al., "Logical Physical Clocks").
// It is not safe for concurrent use; the table's mutex guards it.
type hlc struct {
	wall    int64
	logical uint32
}

// now returns a stamp for a local event at physical time pt, later than every
// stamp returned or observed before.
func (h *hlc) now(pt int64, node string) Stamp {
	if pt > h.wall {
		h.wall, h.logical = pt, 0
	} else {
		h.logical++
	}
	return Stamp{Wall: h.wall, Logical: h.logical, Node: node}
}

// observe moves the clock past a stamp received from another member at
// physical time pt, so that a local write made after seeing it wins over it.
func (h *hlc) observe(pt int64, s Stamp) {
	wall := max(h.wall, s.Wall, pt)
	switch {
	case wall == h.wall && wall == s.Wall:
		h.logical = max(h.logical, s.Logical) + 1
	case wall == h.wall:
		h.logical++
	case wall == s.Wall:
		h.logical = s.Logical + 1
	default:
		h.logical = 0
	}
	h.wall = wall
}
