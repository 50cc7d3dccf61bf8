//go:build linux

package main

import (
	"encoding/json"
	"net"
	"net/http"
	"sync"

	"github.com/ringfs/ringfs/engine"
)

// statsHub serves engine stats on one Unix socket for the whole run,
// although every cell has its own engine: connections are handed to the
// running engine's ServeStats, and between engine cells to a small server
// that answers with the last engine's final stats. So `fsctl stats` can
// watch a run from start to end on one path.
type statsHub struct {
	l    net.Listener
	idle *http.Server

	mu   sync.Mutex
	cur  *connQueue // the running engine's, or nil
	rest *connQueue // the idle server's
	last engine.Stats
	have bool
}

func newStatsHub(path string) (*statsHub, error) {
	l, err := engine.ListenStats(path)
	if err != nil {
		return nil, err
	}
	h := &statsHub{l: l, rest: newConnQueue(l.Addr())}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		h.mu.Lock()
		st, have := h.last, h.have
		h.mu.Unlock()
		if !have {
			http.Error(w, "no ringfs engine has run yet", http.StatusServiceUnavailable)
			return
		}
		serveJSON(w, st)
	})
	mux.HandleFunc("GET /files", func(w http.ResponseWriter, _ *http.Request) {
		serveJSON(w, []engine.FileStats{})
	})
	h.idle = &http.Server{Handler: mux}
	go h.idle.Serve(h.rest)
	go h.acceptLoop()
	return h, nil
}

func serveJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func (h *statsHub) acceptLoop() {
	for {
		c, err := h.l.Accept()
		if err != nil {
			return
		}
		h.mu.Lock()
		q := h.cur
		if q == nil {
			q = h.rest
		}
		h.mu.Unlock()
		if !q.put(c) {
			c.Close()
		}
	}
}

// attach hands new connections to e's stats server until detach.
func (h *statsHub) attach(e *engine.Engine) {
	q := newConnQueue(h.l.Addr())
	h.mu.Lock()
	h.cur = q
	h.mu.Unlock()
	go e.ServeStats(q)
}

// detach keeps e's final stats for the idle server and stops handing
// connections to e.
func (h *statsHub) detach(e *engine.Engine) {
	st := e.Stats()
	h.mu.Lock()
	q := h.cur
	h.cur, h.last, h.have = nil, st, true
	h.mu.Unlock()
	if q != nil {
		for _, c := range q.closeAndDrain() {
			if !h.rest.put(c) {
				c.Close()
			}
		}
	}
}

func (h *statsHub) close() {
	h.l.Close()
	h.idle.Close()
	h.rest.Close()
}

// connQueue is a net.Listener fed by statsHub.acceptLoop.
type connQueue struct {
	addr net.Addr
	ch   chan net.Conn
	mu   sync.Mutex
	done chan struct{}
	shut bool
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, ch: make(chan net.Conn, 16), done: make(chan struct{})}
}

func (q *connQueue) put(c net.Conn) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.shut {
		return false
	}
	select {
	case q.ch <- c:
		return true
	default:
		return false
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	for _, c := range q.closeAndDrain() {
		c.Close()
	}
	return nil
}

// closeAndDrain closes the queue and returns the connections it held.
func (q *connQueue) closeAndDrain() []net.Conn {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.shut {
		q.shut = true
		close(q.done)
	}
	var cs []net.Conn
	for {
		select {
		case c := <-q.ch:
			cs = append(cs, c)
		default:
			return cs
		}
	}
}

func (q *connQueue) Addr() net.Addr { return q.addr }
