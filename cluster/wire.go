package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Every message this package hands memberlist starts with a version byte and
// a kind byte, then JSON. A member that meets a version it does not know
// drops the message (and counts it) rather than misreading it.
const wireVersion byte = 1

const (
	// kindState is a member's whole state about itself: its observations,
	// the drains it holds and their stamps. It is the direct message sent to
	// every member each heartbeat and after a local change, and the push/pull
	// state.
	kindState byte = 1
	// kindDrains carries drain registers only, gossiped through the
	// broadcast queue.
	kindDrains byte = 2
)

// stateMsg is the body of both kinds.
type stateMsg struct {
	From string `json:"from"`
	// Seq orders the sender's observation sets; it grows on every change.
	Seq  uint64        `json:"seq,omitempty"`
	Hash string        `json:"config_hash,omitempty"`
	Obs  []Observation `json:"obs,omitempty"`
	// Held lists the stamp of every register the sender holds, so members can
	// count where a drain is known. Nil in a kindDrains message.
	Held   []heldDrain `json:"held,omitempty"`
	Drains []Drain     `json:"drains,omitempty"`
}

type heldDrain struct {
	Key   DrainKey `json:"key"`
	Stamp Stamp    `json:"stamp"`
}

var errWireVersion = errors.New("unknown message version")

func encode(kind byte, m *stateMsg) []byte {
	body, err := json.Marshal(m)
	if err != nil {
		panic("cluster: encoding a state message: " + err.Error()) // plain data; cannot fail
	}
	return append([]byte{wireVersion, kind}, body...)
}

func decode(buf []byte) (byte, *stateMsg, error) {
	if len(buf) < 2 {
		return 0, nil, errors.New("short message")
	}
	if buf[0] != wireVersion {
		return 0, nil, fmt.Errorf("%w %d", errWireVersion, buf[0])
	}
	kind := buf[1]
	if kind != kindState && kind != kindDrains {
		return 0, nil, fmt.Errorf("unknown message kind %d", kind)
	}
	var m stateMsg
	if err := json.Unmarshal(buf[2:], &m); err != nil {
		return 0, nil, err
	}
	if kind == kindDrains {
		m.Held, m.Obs, m.Seq = nil, nil, 0
	}
	return kind, &m, nil
}
