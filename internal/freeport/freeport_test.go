package freeport

import (
	"net"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPortBelowTheEphemeralRange: the ports are below the range outgoing
// connections draw from, bindable, and never the same twice, while port 0
// (what the tests used) gives ports inside it.
func TestPortBelowTheEphemeralRange(t *testing.T) {
	lo := ephemeralLow()
	require.Greater(t, lo, lowest+1000, "this machine's ephemeral range leaves room below it")
	seen := map[int]bool{}
	for range 200 {
		p, err := Port()
		require.NoError(t, err)
		require.GreaterOrEqual(t, p, lowest)
		require.Less(t, p, lo)
		require.False(t, seen[p], "port %d given twice", p)
		seen[p] = true
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		require.NoError(t, err)
		require.NoError(t, l.Close())
	}
	k, err := kernelPort()
	require.NoError(t, err)
	require.GreaterOrEqual(t, k, lo, "port 0 draws from the ephemeral range")
}

// TestPortSkipsBoundPorts: a port something listens on is not given.
func TestPortSkipsBoundPorts(t *testing.T) {
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	bound := map[int]bool{}
	for p := lowest; p < lowest+50; p++ {
		if l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p)); err == nil {
			held = append(held, l)
			bound[p] = true
		}
	}
	for range 500 {
		p, err := Port()
		require.NoError(t, err)
		require.False(t, bound[p], "port %d is bound", p)
	}
}
