// Package freeport finds loopback ports for the servers tests start as
// processes (omen, Prometheus, Alertmanager, vmagent), which bind them a
// moment after the test chose them.
//
// Not port 0: listening on port 0 draws from the kernel's ephemeral range,
// from which every outgoing connection draws its local port too, so a port
// found that way and released was now and then taken by a client of a test
// running beside (make test runs two packages at a time) before the server
// bound it, and the server exited with "bind: address already in use".
// Below the ephemeral range the kernel hands out no port by itself; a
// random choice there, checked free, and never the same twice in one
// process, leaves only another process choosing the same port in the same
// moment.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
)

// lowest is the first port chosen from; ephemeral ranges start at 32768
// (Linux) or 49152 (IANA), leaving thousands of ports below.
const lowest = 20000

var (
	mu    sync.Mutex
	given = map[int]bool{}
)

// Port returns a loopback TCP port that was free when checked, below the
// kernel's ephemeral range, not returned before in this process.
func Port() (int, error) {
	hi := ephemeralLow()
	mu.Lock()
	defer mu.Unlock()
	if hi-lowest < 1000 {
		return kernelPort()
	}
	for range 1000 {
		p := lowest + rand.IntN(hi-lowest)
		if given[p] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		if err := l.Close(); err != nil {
			return 0, err
		}
		given[p] = true
		return p, nil
	}
	return kernelPort()
}

// ephemeralLow is the first port of the kernel's ephemeral range, 32768 if
// it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	var lo, hi int
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil {
		return 32768
	}
	return lo
}

// kernelPort is port 0's choice, where there is no room below the range.
func kernelPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
